import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { AptOstreeError } from "../errors.ts";
import type { DeltaFile } from "../wire/manifest.ts";

export class DeltaFileMismatchError extends AptOstreeError {
  constructor(path: string, what: string, expected: string | number, actual: string | number) {
    super("E_DELTA_FILE_MISMATCH", `${path}: ${what} is ${actual}, the signed manifest says ${expected}; refusing to apply it`);
  }
}

export async function sha256OfFile(path: string): Promise<string> {
  return (await hashFileInto(createHash("sha256"), path)).digest("hex");
}

/** Feeds a file's bytes to `hash` (a download that resumes hashes what it already has). */
export async function hashFileInto(hash: Hash, path: string): Promise<Hash> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash;
}

/** Checks a downloaded delta file against its manifest entry: size first (cheap), then sha256. */
export async function verifyDeltaFile(localPath: string, expected: DeltaFile): Promise<void> {
  const { size } = await stat(localPath);
  checkDeltaFileSize(expected, size);
  checkDeltaFileDigest(expected, await sha256OfFile(localPath));
}

export function checkDeltaFileSize(expected: DeltaFile, size: number): void {
  if (size !== expected.size) throw new DeltaFileMismatchError(expected.path, "the size", expected.size, size);
}

export function checkDeltaFileDigest(expected: DeltaFile, sha256: string): void {
  if (sha256 !== expected.sha256) throw new DeltaFileMismatchError(expected.path, "the sha256", expected.sha256, sha256);
}
