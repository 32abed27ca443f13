import { describe, expect, it } from "vitest";
import { anyOf } from "../../../shared/trust/signers.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { canonicalJson } from "../../../shared/wire/canonical-json.ts";
import { serializeSignedManifest, signManifest, type Manifest } from "../../../shared/wire/manifest.ts";
import {
  MalformedManifestError,
  ManifestExpiredError,
  ManifestSignatureError,
  RollbackRejectedError,
  UnknownManifestKeyError,
  WrongArchitectureError,
  WrongRefError,
  verifySignedManifest,
} from "../../../shared/verify/manifest.ts";

const key = generateKeyPair();
const now = new Date("2026-11-21T12:00:00Z");
const manifest: Manifest = {
  schema: 1,
  ref: "debian/bookworm/qemu-amd64/appliance-minimal",
  commit: "a".repeat(64),
  version: "3",
  sequence: 3,
  architecture: "amd64",
  channel: "stable",
  issued: "2026-11-21T00:00:00Z",
  expires: "2026-12-21T00:00:00Z",
  downgrade: false,
  deltas: [{ from: "b".repeat(64), fromVersion: "2", size: 10, files: [{ path: "deltas/ab/cd-ef/superblock", size: 10, sha256: "c".repeat(64) }] }],
};
const expect_ = { signers: anyOf([key.publicKey]), now, architecture: "amd64", ref: manifest.ref, bootedSequence: 2 };
const published = (m: Manifest = manifest) => serializeSignedManifest(signManifest(m, [key]));
const goodSignature = signManifest(manifest, [key]).signatures[0]!;

describe("canonical JSON", () => {
  it("sorts keys at every depth and drops whitespace", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 0, y: "é" }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"y":"é","z":0}]},"b":1}');
  });
});

describe("signed manifest verification", () => {
  it("accepts a manifest signed by a pinned key", () => {
    expect(verifySignedManifest(published(), expect_)).toEqual(manifest);
  });

  it("still verifies after the JSON is re-indented", () => {
    expect(verifySignedManifest(JSON.stringify(JSON.parse(published()), null, 2), expect_).commit).toBe(manifest.commit);
  });

  it("rejects a tampered manifest", () => {
    const doc = JSON.parse(published());
    doc.manifest.commit = "d".repeat(64);
    expect(() => verifySignedManifest(doc, expect_)).toThrow(ManifestSignatureError);
  });

  it("rejects a manifest signed by an unknown key", () => {
    const other = generateKeyPair();
    expect(() => verifySignedManifest(serializeSignedManifest(signManifest(manifest, [other])), expect_)).toThrow(UnknownManifestKeyError);
  });

  it("rejects an expired manifest", () => {
    expect(() => verifySignedManifest(published(), { ...expect_, now: new Date("2027-01-01T00:00:00Z") })).toThrow(ManifestExpiredError);
  });

  it("rejects a manifest for another architecture", () => {
    expect(() => verifySignedManifest(published(), { ...expect_, architecture: "arm64" })).toThrow(/for architecture amd64, this device is arm64/);
    expect(() => verifySignedManifest(published(), { ...expect_, architecture: "arm64" })).toThrow(WrongArchitectureError);
  });

  it("rejects a manifest for another ref", () => {
    expect(() => verifySignedManifest(published(), { ...expect_, ref: "other/ref" })).toThrow(WrongRefError);
  });

  it("rejects an older sequence than the booted one (anti-rollback)", () => {
    expect(() => verifySignedManifest(published(), { ...expect_, bootedSequence: 4 })).toThrow(RollbackRejectedError);
  });

  it("rejects an older sequence than the highest this device accepted for the ref, though newer than the booted one", () => {
    expect(() => verifySignedManifest(published(), { ...expect_, bootedSequence: 2, acceptedSequence: 5 })).toThrow(/older than the highest sequence this device accepted for the ref, 5/);
  });

  describe("a signed downgrade", () => {
    const downgrade = { ...manifest, downgrade: true, expires: "2026-11-21T06:00:00Z" };
    const at = new Date("2026-11-21T01:00:00Z");

    it("is taken from a rollout's command, valid for hours", () => {
      expect(verifySignedManifest(published(downgrade), { ...expect_, now: at, bootedSequence: 4, downgradeAllowed: true }).sequence).toBe(3);
    });

    it("is refused from the channel (a poll or the CLI)", () => {
      expect(() => verifySignedManifest(published(downgrade), { ...expect_, now: at, bootedSequence: 4 })).toThrow(expect.objectContaining({ code: "E_MANIFEST_DOWNGRADE", message: expect.stringMatching(/only from a rollout's command/) }));
    });

    it("is refused when valid for longer than 12 hours", () => {
      expect(() => verifySignedManifest(published({ ...downgrade, expires: "2026-11-22T00:00:00Z" }), { ...expect_, now: at, bootedSequence: 4, downgradeAllowed: true })).toThrow(
        expect.objectContaining({ code: "E_MANIFEST_DOWNGRADE", message: expect.stringMatching(/valid until 2026-11-22T00:00:00Z .*; a downgrade may be valid for 12 h at most from now/) }),
      );
    });

    it("is refused when issued in the future, though its own window is short", () => {
      const ahead = { ...downgrade, issued: "2026-12-20T00:00:00Z", expires: "2026-12-20T11:00:00Z" };
      expect(() => verifySignedManifest(published(ahead), { ...expect_, now: at, bootedSequence: 4, downgradeAllowed: true })).toThrow(expect.objectContaining({ code: "E_MANIFEST_DOWNGRADE" }));
    });
  });

  it.each([
    ["not JSON", "{nope", /not JSON/],
    ["without signatures", JSON.stringify({ manifest, signatures: [] }), /signatures/],
    ["with an unknown top-level field", JSON.stringify({ ...JSON.parse(published()), extra: 1 }), /\(root\): unknown key extra/],
    // Thousands of entries naming the pinned key: refused by count, before any ed25519 verification.
    ["with thousands of signatures", JSON.stringify({ manifest, signatures: Array.from({ length: 3000 }, () => goodSignature) }), /signatures: at most 8 signatures/],
    ["with a signature of the wrong length", JSON.stringify({ manifest, signatures: [{ ...goodSignature, sig: "QUJD" }] }), /signatures\.0\.sig: must be a 64-byte ed25519 signature/],
  ])("rejects a document %s as malformed", (_what, text, message) => {
    expect(() => verifySignedManifest(text, expect_)).toThrow(MalformedManifestError);
    expect(() => verifySignedManifest(text, expect_)).toThrow(message);
  });

  it("rejects a correctly signed manifest that breaks the schema", () => {
    const bad = { ...manifest, sequence: -1 };
    const signed = { manifest: bad, signatures: signManifest(bad as Manifest, [key]).signatures };
    expect(() => verifySignedManifest(signed, expect_)).toThrow(/malformed manifest: sequence/);
  });
});
