/**
 * OSTree's ed25519 signatures (ostree-sign-ed25519.c): detached metadata `a{sv}` whose key
 * `ostree.sign.ed25519` holds `aay`, one 64-byte signature per signing, over the exact bytes
 * of the signed file (a `.commit` object, or `summary`).
 */
import { AptOstreeError } from "../errors.ts";
import { decode, encode, isVariant, variant, type GVValue } from "../gvariant/index.ts";
import { keyId, sign, verify, type Ed25519KeyPair } from "./ed25519.ts";

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

/**
 * Checks that one of the signatures in `detached` is valid for `data` under one of `trustedKeys`
 * and returns that key's id; otherwise throws, naming what was tried (at most 3 keys).
 */
export function verifyOstreeSignature(data: Uint8Array, detached: Uint8Array | null, trustedKeys: Uint8Array[], what: string): string {
  if (trustedKeys.length === 0) throw new SignatureVerificationError(`cannot verify ${what}: no trusted ed25519 keys are pinned`);
  const signatures = readOstreeSignatures(detached);
  if (signatures.length === 0) throw new SignatureVerificationError(`${what} has no ${OSTREE_SIGN_KEY} signature`);
  for (const publicKey of trustedKeys) {
    if (signatures.some((signature) => verify(signature, data, publicKey))) return keyId(publicKey);
  }
  const tried = trustedKeys.slice(0, 3).map((k) => keyId(k).slice(0, 16)).join(", ");
  throw new SignatureVerificationError(
    `${what}: none of its ${signatures.length} signature(s) is valid for the trusted key(s) ${tried}${trustedKeys.length > 3 ? ", ..." : ""}`,
  );
}
