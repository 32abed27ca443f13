/**
 * The fleet enrollment secret, read from a file by `serve --enrollment-secret-file` and by the
 * agent (`enrollmentSecretFile`): the file's bytes without trailing whitespace, at least 16 of
 * them (`head -c 32 /dev/urandom | base64 > FILE` makes a good one).
 */
import { readFile } from "node:fs/promises";
import { AptOstreeError } from "./errors.ts";

export const MIN_ENROLLMENT_SECRET_BYTES = 16;

export class EnrollmentSecretError extends AptOstreeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("E_ENROLLMENT_SECRET", message, options);
  }
}

/** Throws EnrollmentSecretError (its cause the fs error, e.g. ENOENT) when unreadable or too short. */
export async function readEnrollmentSecret(path: string): Promise<Uint8Array> {
  const bytes = await readFile(path).catch((error: NodeJS.ErrnoException) => {
    throw new EnrollmentSecretError(`cannot read the enrollment secret ${path}: ${error.message}`, { cause: error });
  });
  const text = bytes.toString("utf8").replace(/\s+$/, "");
  const secret = new Uint8Array(Buffer.from(text, "utf8"));
  if (secret.length < MIN_ENROLLMENT_SECRET_BYTES) {
    throw new EnrollmentSecretError(`the enrollment secret ${path} holds ${secret.length} bytes; it needs at least ${MIN_ENROLLMENT_SECRET_BYTES} (make one with: head -c 32 /dev/urandom | base64 > ${path})`);
  }
  return secret;
}
