import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `apt-ostree-test-${prefix}-`));
}

/** Removes a tree, first clearing the immutable bit ostree sets on deployment roots (DESIGN.md 5.3). */
export async function removeTree(path: string): Promise<void> {
  const found = await execa("find", [path, "-maxdepth", "7", "-path", "*/ostree/deploy/*/deploy/*", "-prune", "-type", "d"], { reject: false });
  const deployments = found.stdout.split("\n").filter(Boolean);
  if (deployments.length > 0) await execa("chattr", ["-i", ...deployments], { reject: false });
  await rm(path, { recursive: true, force: true });
}
