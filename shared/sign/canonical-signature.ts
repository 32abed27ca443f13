/**
 * ed25519 signatures over the canonical JSON of a document (DESIGN.md 3.2), the one scheme
 * for manifests, commands and device reports: `[{keyid, sig}]` beside the signed payload.
 */
import { canonicalJson } from "../wire/canonical-json.ts";
import { keyId, sign, verify, type Ed25519KeyPair } from "./ed25519.ts";
import type { RoleName, Signers } from "../trust/signers.ts";

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
  | { ok: true; keyid: string; keyids: string[] }
  | { ok: false; reason: "unknown-key"; keyids: string[] }
  | { ok: false; reason: "bad-signature"; keyid: string }
  | { ok: false; reason: "revoked"; keyid: string }
  | { ok: false; reason: "wrong-role"; keyid: string; holds: RoleName }
  | { ok: false; reason: "threshold"; valid: number };

/**
 * Valid when signatures by at least `signers.threshold` distinct keys of the role verify.
 * Otherwise says why, most telling first: a key the root revoked, a key of another role, a
 * signature that fails, too few valid ones, or only unknown keys. Bounded whatever the caller
 * checked before: only the first `maxSignatures` entries count and each key is tried once (its
 * first entry), so at most min(maxSignatures, keys of the role) signatures are verified.
 */
export function verifyCanonical(payload: unknown, signatures: SignatureEntry[], signers: Signers, maxSignatures = MAX_SIGNATURES): CanonicalVerdict {
  const considered = signatures.slice(0, maxSignatures);
  const tried = new Set<string>();
  const known = considered.filter((s) => signers.keys.has(s.keyid) && !tried.has(s.keyid) && tried.add(s.keyid));
  const bytes = known.length > 0 ? canonicalBytes(payload) : null;
  const valid = known.filter((s) => verify(Buffer.from(s.sig, "base64"), bytes!, signers.keys.get(s.keyid)!)).map((s) => s.keyid);
  if (valid.length >= signers.threshold) return { ok: true, keyid: valid[0]!, keyids: valid };
  const revoked = considered.find((s) => signers.revoked.has(s.keyid));
  if (revoked) return { ok: false, reason: "revoked", keyid: revoked.keyid };
  if (valid.length === 0) {
    const foreign = considered.find((s) => signers.otherRoles.has(s.keyid));
    if (foreign) return { ok: false, reason: "wrong-role", keyid: foreign.keyid, holds: signers.otherRoles.get(foreign.keyid)!.role };
    if (known.length > 0) return { ok: false, reason: "bad-signature", keyid: known[0]!.keyid };
    return { ok: false, reason: "unknown-key", keyids: considered.map((s) => s.keyid) };
  }
  return { ok: false, reason: "threshold", valid: valid.length };
}
