import { createHash, randomBytes } from "node:crypto";
import * as ed from "@noble/ed25519";

// noble needs a synchronous SHA-512 for its sync API; Node's is native and exists on Node 18.
ed.hashes.sha512 = (message: Uint8Array) => new Uint8Array(createHash("sha512").update(message).digest());

export interface Ed25519KeyPair {
  /** The 32-byte private seed. */
  seed: Uint8Array;
  /** The 32-byte public key. */
  publicKey: Uint8Array;
}

export function generateKeyPair(): Ed25519KeyPair {
  const seed = new Uint8Array(randomBytes(32));
  return { seed, publicKey: ed.getPublicKey(seed) };
}

export function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  return ed.getPublicKey(seed);
}

/** Deterministic ed25519 signature (RFC 8032) of `message`. */
export function sign(message: Uint8Array, seed: Uint8Array): Uint8Array {
  return ed.sign(message, seed);
}

/** True when `signature` is a valid signature of `message` by `publicKey`; malformed input is just invalid. */
export function verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    return ed.verify(signature, message, publicKey);
  } catch {
    return false;
  }
}

/** Key id: hex sha256 of the raw public key (DESIGN.md 3.2). */
export function keyId(publicKey: Uint8Array): string {
  return createHash("sha256").update(publicKey).digest("hex");
}
