import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `apt-ostree-test-${prefix}-`));
}

/** Removes a tree, first clearing the immutable bit ostree sets on deployment roots (DESIGN.md 5.3). */
export async function removeTree(path: string): Promise<void> {
  const deployRoots = join(path, "ostree/deploy");
  for (const os of await readdir(deployRoots).catch(() => [] as string[])) {
    for (const deployment of await readdir(join(deployRoots, os, "deploy")).catch(() => [] as string[])) {
      await execa("chattr", ["-i", join(deployRoots, os, "deploy", deployment)], { reject: false });
    }
  }
  await rm(path, { recursive: true, force: true });
}
