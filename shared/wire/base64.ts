/**
 * Canonical base64 only. Node's decoder skips characters outside the alphabet and ignores the
 * unused low bits of the last character, so many strings decode to the same bytes: a token or
 * signature mutated in transit would still verify, and two spellings of one key would compare
 * unequal as text. Every encoded value a peer sends is held to the one spelling we write.
 */

/** A 32-byte ed25519 public key in base64 (44 characters, the last before '=' carrying 2 unused bits). */
export const ED25519_PUBLIC_KEY_BASE64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
/** A 64-byte ed25519 signature in base64 (88 characters, the last before '==' carrying 4 unused bits). */
export const ED25519_SIGNATURE_BASE64 = /^[A-Za-z0-9+/]{85}[AQgw]==$/;
/** A 64-byte ed25519 signature in unpadded base64url (86 characters). */
export const ED25519_SIGNATURE_BASE64URL = /^[A-Za-z0-9_-]{85}[AQgw]$/;
/** 32 bytes (an HMAC-SHA256) in unpadded base64url (43 characters). */
export const SHA256_BASE64URL = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

/** The bytes of canonical, padded base64 text, or null for any other spelling. */
export function decodeBase64Strict(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  const bytes = Buffer.from(text, "base64");
  return bytes.toString("base64") === text ? new Uint8Array(bytes) : null;
}

/** The bytes of canonical, unpadded base64url text, or null for any other spelling. */
export function decodeBase64UrlStrict(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  const bytes = Buffer.from(text, "base64url");
  return bytes.toString("base64url") === text ? new Uint8Array(bytes) : null;
}
