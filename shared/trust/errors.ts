/**
 * Refusals of the trust model (docs/trust.md), one class per rule so the agent reports exactly
 * which one a document broke. Messages name the document, the key and the root version.
 */
import { AptOstreeError } from "../errors.ts";
import type { RoleName, Signers } from "./signers.ts";

export abstract class TrustError extends AptOstreeError {}

const short = (keyid: string) => keyid.slice(0, 16);
const fromRoot = (version: number | null) => (version === null ? "" : ` (root version ${version})`);

export class KeyRevokedError extends TrustError {
  constructor(what: string, keyid: string, rootVersion: number | null) {
    super("E_KEY_REVOKED", `${what} is signed by key ${short(keyid)}, which the root revoked${fromRoot(rootVersion)}; refusing it`);
  }
}

export class WrongRoleError extends TrustError {
  constructor(what: string, keyid: string, holds: RoleName, needed: string, rootVersion: number | null) {
    super("E_KEY_WRONG_ROLE", `${what} is signed by key ${short(keyid)}, which holds the ${holds} role, not ${needed}${fromRoot(rootVersion)}; refusing it`);
  }
}

export class SignatureThresholdError extends TrustError {
  constructor(what: string, valid: number, signers: Signers) {
    super("E_SIGNATURE_THRESHOLD", `${what} has ${valid} valid ${signers.role} signature(s); the root requires ${signers.threshold}${fromRoot(signers.rootVersion)}`);
  }
}
