import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import { objectPath, readCommitObject, readDetachedMetadata } from "../../shared/ostree/repo.ts";
import type { Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { addOstreeSignature, keepSignatures } from "../../shared/sign/ostree-signature.ts";

/**
 * Signs the commit's detached metadata in OSTree's format with `keys` (the image role's), and
 * drops the signatures none of them made: after rotations, retired keys' signatures would
 * otherwise pile up ahead of the current ones, past the few a device looks at. Returns false
 * when nothing changed (signing is deterministic, so reruns are no-ops).
 */
export async function signCommit(repo: string, commit: string, keys: Ed25519KeyPair[]): Promise<boolean> {
  const existing = await readDetachedMetadata(repo, commit);
  const data = await readCommitObject(repo, commit);
  const kept = keepSignatures(existing, data, keys.map((k) => k.publicKey));
  const updated = keys.reduce<Uint8Array | null>((detached, key) => addOstreeSignature(detached, data, key), kept)!;
  if (existing && Buffer.from(updated).equals(existing)) return false;
  await writeFileAtomic(objectPath(repo, commit, "commitmeta"), updated);
  return true;
}
