/**
 * ed25519 signatures over the canonical JSON of a document (DESIGN.md 3.2), the one scheme
 * for manifests, commands and device reports: `[{keyid, sig}]` beside the signed payload.
 */
import { canonicalJson } from "../wire/canonical-json.ts";
import { keyId, sign, verify, type Ed25519KeyPair } from "./ed25519.ts";

export interface SignatureEntry {
  keyid: string;
  sig: string;
}

/**
 * The most signatures a signed document carries (the wire schemas refuse more) and the most
 * verifyCanonical looks at: a server signs with its key, with the next one too while keys
 * rotate. A hostile document with thousands must not cost thousands of ed25519 verifications.
 */
export const MAX_SIGNATURES = 8;

export function canonicalBytes(payload: unknown): Uint8Array {
  return Buffer.from(canonicalJson(payload), "utf8");
}

export function signCanonical(payload: unknown, keys: Ed25519KeyPair[]): SignatureEntry[] {
  const bytes = canonicalBytes(payload);
  return keys.map((key) => ({ keyid: keyId(key.publicKey), sig: Buffer.from(sign(bytes, key.seed)).toString("base64") }));
}

export type CanonicalVerdict =
  | { ok: true; keyid: string }
  | { ok: false; reason: "unknown-key"; keyids: string[] }
  | { ok: false; reason: "bad-signature"; keyid: string };

/**
 * Valid when one signature by a trusted key verifies; otherwise says whether no key was known or
 * the signature failed. Bounded whatever the caller checked before: only the first
 * MAX_SIGNATURES entries count, and each pinned key is tried once (its first entry), so at most
 * min(MAX_SIGNATURES, pinned keys) signatures are verified.
 */
export function verifyCanonical(payload: unknown, signatures: SignatureEntry[], trustedKeys: Uint8Array[]): CanonicalVerdict {
  const considered = signatures.slice(0, MAX_SIGNATURES);
  const pinned = new Map(trustedKeys.map((key) => [keyId(key), key]));
  const tried = new Set<string>();
  const known = considered.filter((s) => pinned.has(s.keyid) && !tried.has(s.keyid) && tried.add(s.keyid));
  if (known.length === 0) return { ok: false, reason: "unknown-key", keyids: considered.map((s) => s.keyid) };
  const bytes = canonicalBytes(payload);
  const valid = known.find((s) => verify(Buffer.from(s.sig, "base64"), bytes, pinned.get(s.keyid)!));
  return valid ? { ok: true, keyid: valid.keyid } : { ok: false, reason: "bad-signature", keyid: known[0]!.keyid };
}
