import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import { objectPath, readCommitObject, readDetachedMetadata } from "../../shared/ostree/repo.ts";
import type { Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { addOstreeSignature } from "../../shared/sign/ostree-signature.ts";

/**
 * Adds our ed25519 signature to the commit's detached metadata in OSTree's format. Returns
 * false when the commit already carried it (signing is deterministic, so reruns are no-ops).
 */
export async function signCommit(repo: string, commit: string, key: Ed25519KeyPair): Promise<boolean> {
  const existing = await readDetachedMetadata(repo, commit);
  const updated = addOstreeSignature(existing, await readCommitObject(repo, commit), key);
  if (existing && Buffer.from(updated).equals(existing)) return false;
  await writeFileAtomic(objectPath(repo, commit, "commitmeta"), updated);
  return true;
}
