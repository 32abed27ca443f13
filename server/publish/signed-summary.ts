/**
 * Updates `summary` and its `summary.sig` without the window `ostree summary -u` leaves (it
 * deletes summary.sig): regenerate in a shadow repo that shares the live repo's objects, refs
 * and deltas, sign, then rename the signature and the summary into place.
 */
import { copyFile, mkdir, readFile, rename, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import { fsyncPath, writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import { updateSummary } from "../../shared/ostree/summary.ts";
import type { Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { addOstreeSignature } from "../../shared/sign/ostree-signature.ts";

const SHARED = ["objects", "refs", "deltas", "delta-indexes"];

export async function updateSignedSummary(repo: string, keys: Ed25519KeyPair[]): Promise<void> {
  const shadow = join(repo, "tmp", `apt-ostree-summary-${process.pid}`);
  await rm(shadow, { recursive: true, force: true });
  await mkdir(join(shadow, "tmp"), { recursive: true });
  try {
    await copyFile(join(repo, "config"), join(shadow, "config"));
    for (const name of SHARED) {
      await mkdir(join(repo, name), { recursive: true });
      await symlink(join(repo, name), join(shadow, name));
    }
    await updateSummary(shadow);
    const summary = await readFile(join(shadow, "summary"));
    const signature = keys.reduce<Uint8Array | null>((detached, key) => addOstreeSignature(detached, summary, key), null)!;
    await writeFileAtomic(join(shadow, "summary.sig"), signature);
    // Neither file is ever partial; the two renames are microseconds apart, and a client that
    // races them sees a signature mismatch and retries. Devices rely on the manifest instead,
    // which is one file and one rename.
    await rename(join(shadow, "summary.sig"), join(repo, "summary.sig.new"));
    await rename(join(shadow, "summary"), join(repo, "summary.new"));
    await rename(join(repo, "summary.new"), join(repo, "summary"));
    await rename(join(repo, "summary.sig.new"), join(repo, "summary.sig"));
    await fsyncPath(repo);
  } finally {
    await rm(shadow, { recursive: true, force: true });
  }
}
