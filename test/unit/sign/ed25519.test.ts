import { describe, expect, it } from "vitest";
import { generateKeyPair, publicKeyFromSeed, sign, verify } from "../../../shared/sign/ed25519.ts";

const hex = (text: string) => new Uint8Array(Buffer.from(text, "hex"));

// RFC 8032 section 7.1, TEST 2 (one-byte message).
const SEED = hex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
const PUBLIC = hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
const MESSAGE = hex("72");
const SIGNATURE = hex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");

describe("ed25519", () => {
  it("matches RFC 8032's test vector", () => {
    expect(publicKeyFromSeed(SEED)).toEqual(PUBLIC);
    expect(sign(MESSAGE, SEED)).toEqual(SIGNATURE);
    expect(verify(SIGNATURE, MESSAGE, PUBLIC)).toBe(true);
  });

  it("rejects a changed message, a changed signature, another key and malformed input", () => {
    const other = generateKeyPair();
    const flipped = SIGNATURE.slice();
    flipped[10]! ^= 1;
    expect(verify(SIGNATURE, hex("73"), PUBLIC)).toBe(false);
    expect(verify(flipped, MESSAGE, PUBLIC)).toBe(false);
    expect(verify(SIGNATURE, MESSAGE, other.publicKey)).toBe(false);
    expect(verify(SIGNATURE.subarray(1), MESSAGE, PUBLIC)).toBe(false);
    expect(verify(SIGNATURE, MESSAGE, new Uint8Array(32))).toBe(false);
    expect(() => sign(MESSAGE, new Uint8Array(31))).toThrow(/32 bytes, not 31/);
  });

  it("generates key pairs whose signatures verify", () => {
    const pair = generateKeyPair();
    expect(verify(sign(MESSAGE, pair.seed), MESSAGE, pair.publicKey)).toBe(true);
  });
});
