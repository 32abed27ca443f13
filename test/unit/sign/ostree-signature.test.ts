import { describe, expect, it } from "vitest";
import { anyOf } from "../../../shared/trust/signers.ts";
import { generateKeyPair, keyId } from "../../../shared/sign/ed25519.ts";
import { formatPublicKey, formatSecretKey, parsePublicKeys, parseSecretKey } from "../../../shared/sign/keys.ts";
import { addOstreeSignature, readOstreeSignatures, verifyOstreeSignature } from "../../../shared/sign/ostree-signature.ts";
import { CommitChecksumMismatchError, verifyCommit } from "../../../shared/verify/commit.ts";
import { VECTOR_COMMIT, vectorFile, vectorObject } from "../../helpers/fixtures.ts";

const keyA = parsePublicKeys(vectorFile("key-a.pub").toString(), "key-a.pub");
const keyB = parsePublicKeys(vectorFile("key-b.pub").toString(), "key-b.pub");
const secretA = parseSecretKey(vectorFile("key-a.secret").toString(), "key-a.secret");
const commitObject = vectorObject(VECTOR_COMMIT, "commit");
const commitMeta = vectorObject(VECTOR_COMMIT, "commitmeta");

describe("OSTree ed25519 signatures (upstream vectors)", () => {
  it("accepts the commit signed by upstream OSTree with key A", () => {
    expect(verifyOstreeSignature(commitObject, commitMeta, anyOf(keyA), "vector commit")).toBe(keyId(keyA[0]!));
  });

  it("accepts the summary signed by upstream OSTree with key A", () => {
    expect(verifyOstreeSignature(vectorFile("repo/summary"), vectorFile("repo/summary.sig"), anyOf(keyA), "summary")).toBe(keyId(keyA[0]!));
  });

  it("rejects the commit against key B, naming the key it tried", () => {
    expect(() => verifyOstreeSignature(commitObject, commitMeta, anyOf(keyB), "vector commit")).toThrow(
      new RegExp(`none of its 1 signature\\(s\\) is valid for the trusted key\\(s\\) ${keyId(keyB[0]!).slice(0, 16)}`),
    );
  });

  it("re-signs the commit into the same detached metadata, byte for byte", () => {
    expect(Buffer.from(addOstreeSignature(null, commitObject, secretA))).toEqual(commitMeta);
  });

  it("re-signs the summary into the same summary.sig, byte for byte", () => {
    expect(Buffer.from(addOstreeSignature(null, vectorFile("repo/summary"), secretA))).toEqual(vectorFile("repo/summary.sig"));
  });

  it("does not add the same signature twice and appends a second key's", () => {
    expect(Buffer.from(addOstreeSignature(commitMeta, commitObject, secretA))).toEqual(commitMeta);
    const second = addOstreeSignature(commitMeta, commitObject, generateKeyPair());
    expect(readOstreeSignatures(second)).toHaveLength(2);
    expect(verifyOstreeSignature(commitObject, second, anyOf(keyA), "commit")).toBe(keyId(keyA[0]!));
  });

  it("detects a tampered commit object", () => {
    const tampered = Buffer.from(commitObject);
    tampered[tampered.length - 40]! ^= 1;
    expect(() => verifyOstreeSignature(tampered, commitMeta, anyOf(keyA), "commit")).toThrow(/none of its 1 signature/);
    expect(() => verifyCommit({ checksum: VECTOR_COMMIT, commitObject: tampered, detachedMetadata: commitMeta }, anyOf(keyA))).toThrow(
      CommitChecksumMismatchError,
    );
  });

  it("detects a tampered commit signature", () => {
    const tampered = Buffer.from(commitMeta);
    tampered[30]! ^= 0x80;
    expect(() => verifyCommit({ checksum: VECTOR_COMMIT, commitObject, detachedMetadata: tampered }, anyOf(keyA))).toThrow(/none of its 1 signature/);
  });

  it("rejects an unsigned commit and an empty key list with distinct messages", () => {
    expect(() => verifyCommit({ checksum: VECTOR_COMMIT, commitObject, detachedMetadata: null }, anyOf(keyA))).toThrow(/has no ostree.sign.ed25519 signature/);
    expect(() => verifyCommit({ checksum: VECTOR_COMMIT, commitObject, detachedMetadata: commitMeta }, anyOf([]))).toThrow(/no trusted ed25519 keys/);
  });
});

describe("key files", () => {
  it("round-trips a generated pair through OSTree's file formats", () => {
    const pair = generateKeyPair();
    expect(parseSecretKey(formatSecretKey(pair), "s")).toEqual(pair);
    expect(parsePublicKeys(formatPublicKey(pair.publicKey), "p")).toEqual([pair.publicKey]);
  });

  it.each([
    ["not base64 at all", "!!!", /p:1: not an ed25519 public key/],
    ["31 bytes", Buffer.alloc(31).toString("base64"), /p:1: not an ed25519 public key/],
  ])("rejects a public key that is %s", (_what, text, message) => {
    expect(() => parsePublicKeys(text, "p")).toThrow(message);
  });

  it("rejects a secret key whose public half does not match its seed", () => {
    const pair = generateKeyPair();
    const other = generateKeyPair();
    expect(() => parseSecretKey(formatSecretKey({ seed: pair.seed, publicKey: other.publicKey }), "s")).toThrow(/does not belong to the seed/);
  });
});
