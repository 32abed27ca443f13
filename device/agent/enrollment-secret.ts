/**
 * The fleet enrollment secret on the device (`enrollmentSecretFile`), read once at start: with
 * it, every token carries the proof a server with --auto-accept admits. It only ever matters for
 * enrollment, so a missing file is no proof (debug) and an unusable one a warning, never a reason
 * for the agent not to run.
 */
import { EnrollmentSecretError, readEnrollmentSecret } from "../../shared/enrollment-secret.ts";
import type { Logger } from "../../shared/log.ts";

export async function loadEnrollmentSecret(path: string, log: Logger): Promise<Uint8Array | null> {
  try {
    return await readEnrollmentSecret(path);
  } catch (error) {
    if (!(error instanceof EnrollmentSecretError)) throw error;
    const missing = (error.cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
    if (missing) log.debug({ event: "agent.enrollment-secret.none", path }, `no enrollment secret at ${path}: the server admits this device only once an operator accepts or preauthorizes it`);
    else log.warn({ event: "agent.enrollment-secret.unusable", path, reason: error.message }, `${error.message}; connecting without an enrollment proof`);
    return null;
  }
}
