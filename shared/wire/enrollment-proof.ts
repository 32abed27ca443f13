/**
 * Proof that a device knows the fleet enrollment secret, without sending the secret: an
 * HMAC-SHA256 under the secret of the device's id and public key, carried in its signed token
 * (device-token.ts, field `enrollment`). Bound to the key, so a proof read off the wire admits
 * nobody else: another key needs another proof, and only the secret makes one.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

import { SHA256_BASE64URL } from "./base64.ts";

/** base64url of 32 bytes, canonically spelled. */
export const ENROLLMENT_PROOF_PATTERN = SHA256_BASE64URL;

/** Domain separation: this MAC means "enroll this id with this key" and nothing else. */
const CONTEXT = "apt-ostree enrollment proof v1";

export function enrollmentProof(secret: Uint8Array, deviceId: string, publicKey: string): string {
  return createHmac("sha256", secret).update(`${CONTEXT}\n${deviceId}\n${publicKey}`).digest("base64url");
}

/** Constant-time comparison; false for a missing or malformed proof. */
export function checkEnrollmentProof(secret: Uint8Array, deviceId: string, publicKey: string, proof: string | undefined): boolean {
  if (proof === undefined || !ENROLLMENT_PROOF_PATTERN.test(proof)) return false;
  // Both are canonical 43-character spellings: comparing the text compares the bytes.
  return timingSafeEqual(Buffer.from(enrollmentProof(secret, deviceId, publicKey)), Buffer.from(proof));
}
