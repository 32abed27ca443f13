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

/** Valid when one signature by a trusted key verifies; otherwise says whether no key was known or the signature failed. */
export function verifyCanonical(payload: unknown, signatures: SignatureEntry[], trustedKeys: Uint8Array[]): CanonicalVerdict {
  const bytes = canonicalBytes(payload);
  const pinned = new Map(trustedKeys.map((key) => [keyId(key), key]));
  const known = signatures.filter((s) => pinned.has(s.keyid));
  if (known.length === 0) return { ok: false, reason: "unknown-key", keyids: signatures.map((s) => s.keyid) };
  const valid = known.find((s) => verify(Buffer.from(s.sig, "base64"), bytes, pinned.get(s.keyid)!));
  return valid ? { ok: true, keyid: valid.keyid } : { ok: false, reason: "bad-signature", keyid: known[0]!.keyid };
}
