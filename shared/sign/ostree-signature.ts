/**
 * OSTree's ed25519 signatures (ostree-sign-ed25519.c): detached metadata `a{sv}` whose key
 * `ostree.sign.ed25519` holds `aay`, one 64-byte signature per signing, over the exact bytes
 * of the signed file (a `.commit` object, or `summary`).
 */
import { AptOstreeError } from "../errors.ts";
import { decode, encode, isVariant, variant, type GVValue } from "../gvariant/index.ts";
import { sign, verify, type Ed25519KeyPair } from "./ed25519.ts";
import { MAX_SIGNATURES } from "./canonical-signature.ts";
import { KeyRevokedError, SignatureThresholdError, WrongRoleError } from "../trust/errors.ts";
import type { Signers } from "../trust/signers.ts";

export const OSTREE_SIGN_KEY = "ostree.sign.ed25519";
const VARDICT = "a{sv}";

export class SignatureVerificationError extends AptOstreeError {
  constructor(message: string) {
    super("E_SIGNATURE", message);
  }
}

/** The ed25519 signatures held in detached metadata bytes (none when absent). */
export function readOstreeSignatures(detached: Uint8Array | null): Uint8Array[] {
  if (detached === null || detached.length === 0) return [];
  const entries = decode(VARDICT, detached) as GVValue[];
  for (const entry of entries) {
    const [key, value] = entry as [string, GVValue];
    if (key !== OSTREE_SIGN_KEY) continue;
    if (!isVariant(value) || value.type !== "aay") {
      throw new SignatureVerificationError(`${OSTREE_SIGN_KEY} has type '${isVariant(value) ? value.type : "?"}', expected 'aay'`);
    }
    return value.value as Uint8Array[];
  }
  return [];
}

/**
 * Signs `data` and returns the new detached metadata: other keys are kept, the signature is
 * appended to `ostree.sign.ed25519` as `ostree sign` does, and not added twice.
 */
export function addOstreeSignature(detached: Uint8Array | null, data: Uint8Array, key: Ed25519KeyPair): Uint8Array {
  const signature = sign(data, key.seed);
  const entries = detached && detached.length > 0 ? (decode(VARDICT, detached) as GVValue[]) : [];
  const existing = readOstreeSignatures(detached);
  if (existing.some((s) => Buffer.from(s).equals(signature))) return encode(VARDICT, entries);
  const value = variant("aay", [...existing, signature]);
  const others = entries.filter((entry) => (entry as GVValue[])[0] !== OSTREE_SIGN_KEY);
  return encode(VARDICT, [...others, [OSTREE_SIGN_KEY, value]]);
}

/** `detached` with only the signatures of `data` that one of `publicKeys` made (other keys of the metadata kept). */
export function keepSignatures(detached: Uint8Array | null, data: Uint8Array, publicKeys: Uint8Array[]): Uint8Array | null {
  if (detached === null || detached.length === 0) return detached;
  const entries = decode(VARDICT, detached) as GVValue[];
  const kept = readOstreeSignatures(detached).filter((signature) => publicKeys.some((key) => verify(signature, data, key)));
  const others = entries.filter((entry) => (entry as GVValue[])[0] !== OSTREE_SIGN_KEY);
  return encode(VARDICT, kept.length === 0 ? others : [...others, [OSTREE_SIGN_KEY, variant("aay", kept)]]);
}

/**
 * Checks that signatures in `detached` by at least `signers.threshold` distinct keys of the role
 * are valid for `data` and returns the first such key's id; otherwise throws, saying whether a
 * revoked key or a key of another role signed it (OSTree's signatures carry no key id, so each
 * known key is tried against each of the first MAX_SIGNATURES signatures).
 */
export function verifyOstreeSignature(data: Uint8Array, detached: Uint8Array | null, signers: Signers, what: string): string {
  if (signers.keys.size === 0) throw new SignatureVerificationError(`cannot verify ${what}: no trusted ed25519 keys are pinned`);
  const signatures = readOstreeSignatures(detached).slice(0, MAX_SIGNATURES);
  if (signatures.length === 0) throw new SignatureVerificationError(`${what} has no ${OSTREE_SIGN_KEY} signature`);
  const signedBy = (publicKey: Uint8Array) => signatures.some((signature) => verify(signature, data, publicKey));
  const valid = [...signers.keys].filter(([, publicKey]) => signedBy(publicKey)).map(([id]) => id);
  if (valid.length >= signers.threshold) return valid[0]!;
  const revoked = [...signers.revoked].find(([, publicKey]) => signedBy(publicKey));
  if (revoked) throw new KeyRevokedError(what, revoked[0], signers.rootVersion);
  if (valid.length > 0) throw new SignatureThresholdError(what, valid.length, signers);
  const foreign = [...signers.otherRoles].find(([, key]) => signedBy(key.publicKey));
  if (foreign) throw new WrongRoleError(what, foreign[0], foreign[1].role, signers.role, signers.rootVersion);
  const tried = [...signers.keys.keys()].slice(0, 3).map((id) => id.slice(0, 16)).join(", ");
  throw new SignatureVerificationError(
    `${what}: none of its ${signatures.length} signature(s) is valid for the trusted ${signers.role === "pinned" ? "" : `${signers.role} `}key(s) ${tried}${signers.keys.size > 3 ? ", ..." : ""}`,
  );
}
