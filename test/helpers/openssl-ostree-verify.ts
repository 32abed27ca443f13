/**
 * A hold-out check of OSTree's `ostree.sign.ed25519` format with none of our code in the loop
 * (Debian's ostree, bookworm's 2022.7 and trixie's 2025.2 alike, is built without ed25519, so
 * `ostree sign --verify` is not available here): the commit object's bytes are read from the
 * archive repo's own layout and checked against their checksum, the signatures come from
 * `ostree show --print-detached-metadata-key`, and OpenSSL does the ed25519 verification.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";

/** SubjectPublicKeyInfo prefix for a raw 32-byte ed25519 key (RFC 8410). */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** The signatures `ostree show` prints for a commit, parsed from GVariant text (`[[byte 0x.., ...], ...]`). */
export async function ostreeShownSignatures(repo: string, commit: string): Promise<Buffer[]> {
  const shown = await execa("ostree", ["show", `--repo=${repo}`, "--print-detached-metadata-key=ostree.sign.ed25519", commit]);
  return [...shown.stdout.matchAll(/\[(?:byte )?(0x[0-9a-f]{2}(?:, 0x[0-9a-f]{2})*)\]/g)].map((m) => Buffer.from(m[1]!.split(", ").map((b) => Number.parseInt(b, 16))));
}

/** Whether OpenSSL finds, among the commit's signatures, one that `publicKey` (raw 32 bytes) made. */
export async function opensslAcceptsCommit(repo: string, commit: string, publicKey: Uint8Array): Promise<boolean> {
  const object = await readFile(join(repo, "objects", commit.slice(0, 2), `${commit.slice(2)}.commit`));
  if (createHash("sha256").update(object).digest("hex") !== commit) throw new Error(`the object file of ${commit} does not hash to its name`);
  const dir = await mkdtemp(join(tmpdir(), "openssl-verify-"));
  try {
    await writeFile(join(dir, "data"), object);
    await writeFile(join(dir, "key.der"), Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(publicKey)]));
    for (const [i, signature] of (await ostreeShownSignatures(repo, commit)).entries()) {
      await writeFile(join(dir, `sig${i}`), signature);
      const result = await execa("openssl", ["pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", join(dir, "key.der"), "-rawin", "-in", join(dir, "data"), "-sigfile", join(dir, `sig${i}`)], { reject: false });
      if (result.exitCode === 0 && /Signature Verified Successfully/.test(result.stdout)) return true;
    }
    return false;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
