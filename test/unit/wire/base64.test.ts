import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decodeBase64Strict, decodeBase64UrlStrict, ED25519_PUBLIC_KEY_BASE64, ED25519_SIGNATURE_BASE64, ED25519_SIGNATURE_BASE64URL, SHA256_BASE64URL } from "../../../shared/wire/base64.ts";
import { Prng } from "../../fuzz/prng.ts";

describe("canonical base64", () => {
  it("decodes what Node encodes, for every length", () => {
    for (let length = 0; length < 70; length++) {
      const bytes = randomBytes(length);
      expect(decodeBase64Strict(bytes.toString("base64"))).toEqual(new Uint8Array(bytes));
      expect(decodeBase64UrlStrict(bytes.toString("base64url"))).toEqual(new Uint8Array(bytes));
    }
  });

  it("refuses every other spelling that Node would decode to the same bytes", () => {
    const text = randomBytes(32).toString("base64");
    for (const other of [`${text.slice(0, 10)}\u00fe${text.slice(10)}`, ` ${text}`, `${text}\n`, text.replace(/=$/, ""), `${text.slice(0, 10)}.${text.slice(10)}`]) {
      expect(Buffer.from(other, "base64")).toEqual(Buffer.from(text, "base64"));
      expect(decodeBase64Strict(other)).toBeNull();
    }
    const url = randomBytes(64).toString("base64url");
    expect(decodeBase64UrlStrict(`${url}==`)).toBeNull();
    expect(decodeBase64UrlStrict(`${url.slice(0, 5)}+${url.slice(6)}`)).toBeNull();
  });

  it("its patterns accept exactly the canonical encodings of their sizes (checked against Node's encoder)", () => {
    const prng = new Prng(7);
    const cases: Array<[RegExp, number, BufferEncoding]> = [[ED25519_PUBLIC_KEY_BASE64, 32, "base64"], [ED25519_SIGNATURE_BASE64, 64, "base64"], [ED25519_SIGNATURE_BASE64URL, 64, "base64url"], [SHA256_BASE64URL, 32, "base64url"]];
    for (const [pattern, size, encoding] of cases) {
      for (let i = 0; i < 200; i++) {
        const text = Buffer.from(prng.bytes(size)).toString(encoding);
        expect(pattern.test(text)).toBe(true);
        // Any last data character: accepted exactly when it re-encodes to itself.
        const at = text.replace(/=+$/, "").length - 1;
        const alphabet = encoding === "base64" ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const other = text.slice(0, at) + alphabet[prng.int(64)] + text.slice(at + 1);
        expect(pattern.test(other)).toBe(Buffer.from(other, encoding).toString(encoding) === other);
      }
    }
  });
});
