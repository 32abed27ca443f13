import { createHash } from "node:crypto";
import { AptOstreeError } from "../errors.ts";
import { verifyOstreeSignature } from "../sign/ostree-signature.ts";
import type { Signers } from "../trust/signers.ts";

export class CommitChecksumMismatchError extends AptOstreeError {
  constructor(expected: string, actual: string) {
    super("E_COMMIT_CHECKSUM", `commit object hashes to ${actual}, not the expected ${expected}: it was altered or is the wrong commit`);
  }
}

export interface CommitToVerify {
  /** The checksum the signed manifest names. */
  checksum: string;
  /** Bytes of the `.commit` object. */
  commitObject: Uint8Array;
  /** Bytes of the `.commitmeta` detached metadata, null when missing. */
  detachedMetadata: Uint8Array | null;
}

/** Checks the commit object is the named commit and carries valid `ostree.sign.ed25519` signatures by the image keys; returns a signing key id. */
export function verifyCommit(commit: CommitToVerify, imageSigners: Signers): string {
  const actual = createHash("sha256").update(commit.commitObject).digest("hex");
  if (actual !== commit.checksum) throw new CommitChecksumMismatchError(commit.checksum, actual);
  return verifyOstreeSignature(commit.commitObject, commit.detachedMetadata, imageSigners, `commit ${commit.checksum.slice(0, 12)}`);
}
