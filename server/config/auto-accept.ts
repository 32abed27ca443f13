/**
 * What `--auto-accept` admits: devices that prove the fleet enrollment secret, never anyone who
 * asks. Without a secret file auto-accept is refused, whoever starts the server (the CLI, the
 * demo, a test).
 */
import { readEnrollmentSecret } from "../../shared/enrollment-secret.ts";
import { ConfigError, type ServeSettings } from "./settings.ts";

/** The secret auto-accept checks proofs against, or null without auto-accept; throws ConfigError or EnrollmentSecretError. */
export async function autoAcceptSecret(settings: Pick<ServeSettings, "autoAccept" | "enrollmentSecretFile">): Promise<Uint8Array | null> {
  if (!settings.autoAccept) return null;
  if (settings.enrollmentSecretFile === null) {
    throw new ConfigError("--auto-accept admits only devices that prove the fleet enrollment secret: pass --enrollment-secret-file FILE (or APT_OSTREE_ENROLLMENT_SECRET_FILE, or enrollmentSecretFile in the config file), and give devices the same file (image build --enrollment-secret FILE)");
  }
  return readEnrollmentSecret(settings.enrollmentSecretFile);
}
