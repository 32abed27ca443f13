import type { CanonicalVerdict } from "../sign/canonical-signature.ts";
import { BadSignatureError, KeyRevokedError, SignatureThresholdError, UnknownKeyError, WrongRoleError, type TrustError } from "./errors.ts";
import type { Signers } from "./signers.ts";

/** The trust error for a refused verdict about `what` (e.g. "manifest for stable"). */
export function refusalFor(verdict: Exclude<CanonicalVerdict, { ok: true }>, what: string, signers: Signers): TrustError {
  switch (verdict.reason) {
    case "revoked":
      return new KeyRevokedError(what, verdict.keyid, signers.rootVersion);
    case "wrong-role":
      return new WrongRoleError(what, verdict.keyid, verdict.holds, signers.role, signers.rootVersion);
    case "threshold":
      return new SignatureThresholdError(what, verdict.valid, signers);
    case "bad-signature":
      return new BadSignatureError(what, verdict.keyid);
    case "unknown-key":
      return new UnknownKeyError(what, verdict.keyids, signers);
  }
}
