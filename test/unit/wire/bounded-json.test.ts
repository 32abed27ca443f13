import { describe, expect, it } from "vitest";
import { anyOf } from "../../../shared/trust/signers.ts";
import { generateKeyPair, keyId } from "../../../shared/sign/ed25519.ts";
import { MalformedManifestError, verifySignedManifest } from "../../../shared/verify/manifest.ts";
import { checkJsonValue, JsonRefusedError } from "../../../shared/wire/bounded-json.ts";

const limits = { maxDepth: 3, maxNodes: 10 };

describe("bounds on a JSON document that arrives already parsed", () => {
  it.each([
    ["a number out of range", JSON.parse('{"a":1e999}'), "non-finite-number", /out of range/],
    ["nesting deeper than the limit", [[[[1]]]], "too-deep", /deeper than 3 levels/],
    ["more values than the limit", Array.from({ length: 10 }, (_, i) => i), "too-many-values", /more than 10 values/],
  ])("refuses %s", (_what, value, reason, message) => {
    expect(() => checkJsonValue(value, limits)).toThrow(JsonRefusedError);
    expect(() => checkJsonValue(value, limits)).toThrow(expect.objectContaining({ reason, message: expect.stringMatching(message) }));
  });

  it("takes a document within them, an own __proto__ key counted as a value", () => {
    expect(() => checkJsonValue(JSON.parse('{"a":[1,{"b":null}],"__proto__":{"c":"d"}}'), limits)).not.toThrow();
  });

  it("has a manifest handed over as an object refused as malformed, not thrown from canonical JSON", () => {
    const pinned = generateKeyPair();
    const signatures = [{ keyid: keyId(pinned.publicKey), sig: `${"A".repeat(86)}==` }];
    const expected = { signers: anyOf([pinned.publicKey]), now: new Date(), architecture: "amd64" };
    let deep = "0";
    for (let i = 0; i < 20_000; i++) deep = `[${deep}]`;
    for (const manifest of [JSON.parse('{"schema":1e999}'), JSON.parse(`{"schema":${deep}}`)]) {
      expect(() => verifySignedManifest({ manifest, signatures }, expected)).toThrow(MalformedManifestError);
    }
    expect(() => verifySignedManifest({ manifest: JSON.parse(`{"schema":${deep}}`), signatures }, expected)).toThrow(/malformed manifest: document nests deeper than 10 levels/);
  });
});
