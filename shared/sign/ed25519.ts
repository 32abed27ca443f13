import { createHash, createPrivateKey, createPublicKey, randomBytes, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from "node:crypto";

// Node's own ed25519 (OpenSSL, on Node 18 too): a pure-JS implementation's precomputed tables
// cost the idle device agent ~12 MiB of RSS (docs/BENCHMARKS.md).
// DER prefixes that wrap a raw 32-byte seed (PKCS#8) or public key (SPKI) for ed25519 (RFC 8410).
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export interface Ed25519KeyPair {
  /** The 32-byte private seed. */
  seed: Uint8Array;
  /** The 32-byte public key. */
  publicKey: Uint8Array;
}

/**
 * Parsing the key costs ~0.4 ms, six times the signature itself: a rollout wave signs one
 * command per device with the same seed. A memo, not state: keyed by the seed array itself (a
 * key pair's seed is never written to), forgotten with it.
 */
const keyObjects = new WeakMap<Uint8Array, KeyObject>();

function privateKeyObject(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new RangeError(`an ed25519 seed has 32 bytes, not ${seed.length}`);
  let key = keyObjects.get(seed);
  if (!key) {
    key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
    keyObjects.set(seed, key);
  }
  return key;
}

export function generateKeyPair(): Ed25519KeyPair {
  const seed = new Uint8Array(randomBytes(32));
  return { seed, publicKey: publicKeyFromSeed(seed) };
}

/** The key as PKCS#8 PEM, for TLS (a broker client certificate carries the device's ed25519 key). */
export function privateKeyPem(seed: Uint8Array): string {
  return privateKeyObject(seed).export({ format: "pem", type: "pkcs8" }) as string;
}

export function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  const spki = createPublicKey(privateKeyObject(seed)).export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(SPKI_PREFIX.length));
}

/** Deterministic ed25519 signature (RFC 8032) of `message`. */
export function sign(message: Uint8Array, seed: Uint8Array): Uint8Array {
  return new Uint8Array(cryptoSign(null, message, privateKeyObject(seed)));
}

/** True when `signature` is a valid signature of `message` by `publicKey`; malformed input is just invalid. */
export function verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: "der", type: "spki" });
    return cryptoVerify(null, message, key, signature);
  } catch {
    return false;
  }
}

/** Key id: hex sha256 of the raw public key (DESIGN.md 3.2). */
export function keyId(publicKey: Uint8Array): string {
  return createHash("sha256").update(publicKey).digest("hex");
}
