/**
 * The fleet enrollment secret of test servers with auto-accept: `serve` refuses --auto-accept
 * without one, and a device is auto-accepted only when its token proves it.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";

export const TEST_ENROLLMENT_SECRET = new Uint8Array(Buffer.from("test-enrollment-secret-0123456789"));

/** Writes the secret into `dir`; returns the settings that turn auto-accept on with it. */
export async function autoAcceptSettings(dir: string): Promise<{ autoAccept: true; enrollmentSecretFile: string }> {
  const enrollmentSecretFile = join(dir, "enrollment-secret");
  await writeFile(enrollmentSecretFile, `${Buffer.from(TEST_ENROLLMENT_SECRET).toString("utf8")}\n`, { mode: 0o600 });
  return { autoAccept: true, enrollmentSecretFile };
}
