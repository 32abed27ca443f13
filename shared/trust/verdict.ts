import type { CanonicalVerdict } from "../sign/canonical-signature.ts";
import { KeyRevokedError, SignatureThresholdError, WrongRoleError, type TrustError } from "./errors.ts";
import type { Signers } from "./signers.ts";

/** Refusals the roles add; an unknown key or a bad signature each caller names in its own words. */
export type RoleRefusal = Extract<CanonicalVerdict, { reason: "revoked" | "wrong-role" | "threshold" }>;

/** The trust error for a refused verdict about `what` (e.g. "manifest"). */
export function refusalFor(verdict: RoleRefusal, what: string, signers: Signers): TrustError {
  switch (verdict.reason) {
    case "revoked":
      return new KeyRevokedError(what, verdict.keyid, signers.rootVersion);
    case "wrong-role":
      return new WrongRoleError(what, verdict.keyid, verdict.holds, signers.role, signers.rootVersion);
    case "threshold":
      return new SignatureThresholdError(what, verdict.valid, signers);
  }
}
