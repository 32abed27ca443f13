/**
 * What a client of a published repo relies on, checked from the files alone: the channel
 * manifest verifies, its commit is present and signed, every delta file it lists matches its
 * size and sha256, and summary.sig verifies summary.
 */
import { anyOf } from "../../shared/trust/signers.ts";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { objectPath } from "../../shared/ostree/repo.ts";
import { verifyOstreeSignature } from "../../shared/sign/ostree-signature.ts";
import { verifyCommit } from "../../shared/verify/commit.ts";
import { verifyDeltaFile } from "../../shared/verify/delta-file.ts";
import { verifySignedManifest } from "../../shared/verify/manifest.ts";
import { manifestPath, type Manifest } from "../../shared/wire/manifest.ts";

export async function checkPublishedRepo(repo: string, ref: string, publicKey: Uint8Array, channel = "stable"): Promise<Manifest> {
  const text = await readFile(join(repo, manifestPath(channel, ref)), "utf8");
  const manifest = verifySignedManifest(text, { signers: anyOf([publicKey]), now: new Date(), architecture: "amd64", ref });
  const commitObject = await readFile(objectPath(repo, manifest.commit, "commit"));
  const detached = await readFile(objectPath(repo, manifest.commit, "commitmeta"));
  verifyCommit({ checksum: manifest.commit, commitObject, detachedMetadata: detached }, anyOf([publicKey]));
  for (const delta of manifest.deltas) for (const file of delta.files) await verifyDeltaFile(join(repo, file.path), file);
  verifyOstreeSignature(await readFile(join(repo, "summary")), await readFile(join(repo, "summary.sig")), anyOf([publicKey]), "summary");
  return manifest;
}
