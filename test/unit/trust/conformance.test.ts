/**
 * The trust model's conformance table (docs/trust.md), in the spirit of tuf-conformance: each
 * row is an attack or a mistake, refused with its own code and a message naming it, and a
 * refused root never replaces the trusted one.
 */
import { describe, expect, it } from "vitest";
import { generateKeyPair, keyId, type Ed25519KeyPair } from "../../../shared/sign/ed25519.ts";
import { addOstreeSignature } from "../../../shared/sign/ostree-signature.ts";
import { verifyCommit } from "../../../shared/verify/commit.ts";
import { verifySignedManifest } from "../../../shared/verify/manifest.ts";
import { signCommand, verifyCommand, type Command } from "../../../shared/wire/command.ts";
import { signManifest, type Manifest } from "../../../shared/wire/manifest.ts";
import { checkRootFresh, parseSignedRoot, serializeSignedRoot, signersFor, verifyNextRoot, verifyRootSelf, type Root } from "../../../shared/trust/root.ts";
import { addRootSignatures, expiryAfterDays, firstRoot, revokeKey, rotateRole, signRoot } from "../../../shared/trust/root-edit.ts";
import { createHash } from "node:crypto";

const NOW = new Date("2026-12-06T12:00:00Z");
const LATER = expiryAfterDays(NOW, 365);

function fleet(rootKeys = 1, rootThreshold = 1) {
  const keys = {
    root: Array.from({ length: rootKeys }, generateKeyPair),
    image: [generateKeyPair()],
    release: [generateKeyPair()],
    command: [generateKeyPair()],
  };
  const pub = (pairs: Ed25519KeyPair[]) => pairs.map((k) => k.publicKey);
  const root = firstRoot({ root: pub(keys.root), image: pub(keys.image), release: pub(keys.release), command: pub(keys.command) }, { root: rootThreshold }, LATER);
  return { keys, root, signed: signRoot(root, keys.root) };
}

const text = (signed: ReturnType<typeof signRoot>) => serializeSignedRoot(signed);

const MANIFEST: Manifest = {
  schema: 1,
  ref: "debian/bookworm/qemu-amd64/appliance-minimal",
  commit: "a".repeat(64),
  version: "2",
  sequence: 2,
  architecture: "amd64",
  channel: "stable",
  issued: "2026-12-06T00:00:00.000Z",
  expires: "2027-01-05T00:00:00.000Z",
  downgrade: false,
  deltas: [],
};

function commandFor(manifest: Manifest): Command {
  return { type: "update", id: "c1", issued: NOW.toISOString(), device: "dev-1", rollout: "r1", manifest: signManifest(manifest, []) } as unknown as Command;
}

describe("root rotation (TUF 5.3)", () => {
  it("accepts the next version signed by the old and the new root keys", () => {
    const { keys, root, signed } = fleet();
    const fresh = generateKeyPair();
    const next = rotateRole(root, "root", [fresh.publicKey], 1, LATER);
    const accepted = verifyNextRoot(verifyRootSelf(text(signed), "v1").root, text(signRoot(next, [keys.root[0]!, fresh])), "v2");
    expect(accepted.root.version).toBe(2);
    expect(accepted.root.roles.root.keyids).toEqual([keyId(fresh.publicKey)]);
  });

  it.each([
    ["only old signatures", "old-only", "E_ROOT_NEW_THRESHOLD", /root version 2 is not signed by 1 of its own \(version 2\) root keys/],
    ["only new signatures", "new-only", "E_ROOT_OLD_THRESHOLD", /root version 2 is not signed by 1 of the trusted root version 1's root keys/],
  ])("refuses a root rotated with %s", (_name, who, code, message) => {
    const { keys, root } = fleet();
    const fresh = generateKeyPair();
    const next = rotateRole(root, "root", [fresh.publicKey], 1, LATER);
    const signed = signRoot(next, who === "old-only" ? [keys.root[0]!] : [fresh]);
    expect(() => verifyNextRoot(root, text(signed), "v2")).toThrow(expect.objectContaining({ code, message: expect.stringMatching(message) }));
  });

  it("refuses a root whose threshold of old root keys is not met", () => {
    const { keys, root } = fleet(3, 2);
    const next = rotateRole(root, "command", [generateKeyPair().publicKey], 1, LATER);
    const signed = signRoot(next, [keys.root[0]!]);
    expect(() => verifyNextRoot(root, text(signed), "v2")).toThrow(expect.objectContaining({ code: "E_ROOT_OLD_THRESHOLD", message: expect.stringMatching(/not signed by 2 of .*\(1 valid\)/) }));
    expect(verifyNextRoot(root, text(addRootSignatures(signed, [keys.root[2]!])), "v2").root.version).toBe(2);
  });

  it("counts a key's signature once, however often it appears", () => {
    const { keys, root } = fleet(3, 2);
    const next = rotateRole(root, "command", [generateKeyPair().publicKey], 1, LATER);
    const once = signRoot(next, [keys.root[0]!]);
    const twice = { root: once.root, signatures: [once.signatures[0]!, once.signatures[0]!] };
    expect(() => verifyNextRoot(root, text(twice), "v2")).toThrow(expect.objectContaining({ code: "E_ROOT_OLD_THRESHOLD" }));
  });

  it.each([
    ["a rollback to an older version", 0],
    ["the same version again", 1],
    ["a skipped version", 3],
  ])("refuses %s", (_name, version) => {
    const { keys, root } = fleet();
    const other = { ...rotateRole(root, "image", [generateKeyPair().publicKey], 1, LATER), version };
    expect(() => verifyNextRoot(root, text(signRoot(other, keys.root)), "fetched")).toThrow(
      version === 0 ? expect.objectContaining({ code: "E_ROOT_MALFORMED" }) : expect.objectContaining({ code: "E_ROOT_VERSION" }),
    );
  });

  it("refuses an expired newest root, but walks through an expired intermediate one", () => {
    const { keys, root } = fleet();
    const v2 = rotateRole(root, "image", [generateKeyPair().publicKey], 1, "2026-01-01T00:00:00.000Z");
    const accepted = verifyNextRoot(root, text(signRoot(v2, keys.root)), "v2").root;
    expect(() => checkRootFresh(accepted, NOW)).toThrow(expect.objectContaining({ code: "E_ROOT_EXPIRED", message: expect.stringMatching(/version 2\) expired at 2026-01-01/) }));
    const v3 = rotateRole(accepted, "release", [generateKeyPair().publicKey], 1, LATER);
    const newest = verifyNextRoot(accepted, text(signRoot(v3, keys.root)), "v3").root;
    expect(() => checkRootFresh(newest, NOW)).not.toThrow();
  });

  it("refuses a root that un-revokes a key", () => {
    const { keys, root } = fleet();
    const v2 = verifyNextRoot(root, text(signRoot(rotateRole(root, "command", [generateKeyPair().publicKey], 1, LATER), keys.root)), "v2").root;
    const v3 = structuredClone({ ...v2, version: 3 });
    v3.revoked = {};
    expect(() => verifyNextRoot(v2, text(signRoot(v3, keys.root)), "v3")).toThrow(expect.objectContaining({ code: "E_ROOT_MALFORMED", message: expect.stringMatching(/un-revokes key/) }));
  });

  it.each<[string, (root: Root) => void, RegExp]>([
    ["a key holding two roles", (r) => (r.roles.command = { keyids: r.roles.image.keyids, threshold: 1 }), /holds two roles/],
    ["a threshold above the role's keys", (r) => (r.roles.image.threshold = 2), /threshold 2 but only 1 key/],
    ["a key id that is not its key's", (r) => (r.roles.image.keyids = ["0".repeat(64)]), /not in keys/],
    ["a revoked key holding a role", (r) => (r.revoked[r.roles.image.keyids[0]!] = r.keys[r.roles.image.keyids[0]!]!.public), /which is revoked/],
  ])("refuses a malformed root: %s", (_name, spoil, message) => {
    const { keys, root } = fleet();
    const bad = structuredClone({ ...root, version: 2 });
    spoil(bad);
    expect(() => verifyNextRoot(root, text(signRoot(bad, keys.root)), "v2")).toThrow(expect.objectContaining({ code: "E_ROOT_MALFORMED", message: expect.stringMatching(message) }));
  });

  it("refuses hostile root documents before any signature is checked", () => {
    expect(() => parseSignedRoot("x".repeat(200 * 1024), "big")).toThrow(expect.objectContaining({ code: "E_ROOT_MALFORMED", message: expect.stringMatching(/larger than|bytes/) }));
    expect(() => parseSignedRoot(`{"root":${"[".repeat(50)}`, "deep")).toThrow(expect.objectContaining({ code: "E_ROOT_MALFORMED" }));
    const { signed } = fleet();
    const many = { ...signed, signatures: Array.from({ length: 17 }, () => signed.signatures[0]!) };
    expect(() => parseSignedRoot(JSON.stringify(many), "many")).toThrow(expect.objectContaining({ code: "E_ROOT_MALFORMED", message: expect.stringMatching(/at most 16 signatures/) }));
  });
});

describe("making root versions", () => {
  it("revoking a key of a role with a threshold of 2 and 2 keys is refused, not silently weakened", () => {
    const { root } = fleet();
    const pair = [generateKeyPair(), generateKeyPair()];
    const two = rotateRole(root, "image", pair.map((k) => k.publicKey), 2, LATER);
    expect(() => revokeKey(two, keyId(pair[0]!.publicKey), LATER)).toThrow(/would leave the image role 1 key\(s\) for its threshold of 2/);
  });
});

describe("role signatures", () => {
  it("a manifest signed by the release key verifies; by the command key it is refused as another role", () => {
    const { keys, root } = fleet();
    const expectations = { now: NOW, architecture: "amd64" };
    expect(verifySignedManifest(signManifest(MANIFEST, keys.release), { ...expectations, signers: signersFor(root, "release") }).commit).toBe(MANIFEST.commit);
    expect(() => verifySignedManifest(signManifest(MANIFEST, keys.command), { ...expectations, signers: signersFor(root, "release") })).toThrow(
      expect.objectContaining({ code: "E_KEY_WRONG_ROLE", message: expect.stringMatching(/manifest is signed by key \w+, which holds the command role, not release \(root version 1\)/) }),
    );
  });

  it("a command signed by the image key is refused as another role", () => {
    const { keys, root } = fleet();
    const payload = signCommand(commandFor(MANIFEST), keys.image);
    expect(() => verifyCommand(payload, signersFor(root, "command"))).toThrow(expect.objectContaining({ code: "E_KEY_WRONG_ROLE", message: expect.stringMatching(/holds the image role, not command/) }));
  });

  it("a commit signed by the command key is refused: a command key alone cannot make a device boot a tree", () => {
    const { keys, root } = fleet();
    const commitObject = new Uint8Array(Buffer.from("a commit object"));
    const checksum = createHash("sha256").update(commitObject).digest("hex");
    const byCommandKey = addOstreeSignature(null, commitObject, keys.command[0]!);
    expect(() => verifyCommit({ checksum, commitObject, detachedMetadata: byCommandKey }, signersFor(root, "image"))).toThrow(
      expect.objectContaining({ code: "E_KEY_WRONG_ROLE", message: expect.stringMatching(/holds the command role, not image/) }),
    );
    const byImageKey = addOstreeSignature(null, commitObject, keys.image[0]!);
    expect(verifyCommit({ checksum, commitObject, detachedMetadata: byImageKey }, signersFor(root, "image"))).toBe(keyId(keys.image[0]!.publicKey));
  });

  it("a revoked key still used is refused by name, on a command, a manifest and a commit", () => {
    const { keys, root } = fleet();
    const spare = generateKeyPair();
    const withSpare = rotateRole(root, "command", [keys.command[0]!.publicKey, spare.publicKey], 1, LATER);
    const v3 = revokeKey(withSpare, keyId(keys.command[0]!.publicKey), LATER);
    expect(() => verifyCommand(signCommand(commandFor(MANIFEST), keys.command), signersFor(v3, "command"))).toThrow(
      expect.objectContaining({ code: "E_KEY_REVOKED", message: expect.stringMatching(/command is signed by key \w+, which the root revoked \(root version 3\)/) }),
    );
    const rotated = rotateRole(root, "release", [generateKeyPair().publicKey], 1, LATER);
    expect(() => verifySignedManifest(signManifest(MANIFEST, keys.release), { now: NOW, architecture: "amd64", signers: signersFor(rotated, "release") })).toThrow(expect.objectContaining({ code: "E_KEY_REVOKED" }));
    const image = rotateRole(root, "image", [generateKeyPair().publicKey], 1, LATER);
    const commitObject = new Uint8Array(Buffer.from("another commit"));
    const checksum = createHash("sha256").update(commitObject).digest("hex");
    expect(() => verifyCommit({ checksum, commitObject, detachedMetadata: addOstreeSignature(null, commitObject, keys.image[0]!) }, signersFor(image, "image"))).toThrow(
      expect.objectContaining({ code: "E_KEY_REVOKED" }),
    );
  });

  it("a role with threshold 2 needs two distinct keys", () => {
    const releaseKeys = [generateKeyPair(), generateKeyPair()];
    const { keys, root } = fleet();
    const two = rotateRole(root, "release", releaseKeys.map((k) => k.publicKey), 2, LATER);
    const signers = signersFor(two, "release");
    expect(() => verifySignedManifest(signManifest(MANIFEST, [releaseKeys[0]!]), { now: NOW, architecture: "amd64", signers })).toThrow(
      expect.objectContaining({ code: "E_SIGNATURE_THRESHOLD", message: expect.stringMatching(/has 1 valid release signature\(s\); the root requires 2/) }),
    );
    expect(verifySignedManifest(signManifest(MANIFEST, releaseKeys), { now: NOW, architecture: "amd64", signers }).version).toBe("2");
    void keys;
  });

  it("a manifest replayed after its release key was rotated out is refused", () => {
    const { keys, root } = fleet();
    const old = signManifest(MANIFEST, keys.release);
    const rotated = rotateRole(root, "release", [generateKeyPair().publicKey], 1, LATER);
    expect(() => verifySignedManifest(old, { now: NOW, architecture: "amd64", signers: signersFor(rotated, "release") })).toThrow(expect.objectContaining({ code: "E_KEY_REVOKED" }));
  });

  it("manifests for another channel or architecture are refused even when well signed", () => {
    const { keys, root } = fleet();
    const signers = signersFor(root, "release");
    expect(() => verifySignedManifest(signManifest({ ...MANIFEST, channel: "beta" }, keys.release), { now: NOW, architecture: "amd64", channel: "stable", signers })).toThrow(expect.objectContaining({ code: "E_MANIFEST_WRONG_CHANNEL" }));
    expect(() => verifySignedManifest(signManifest({ ...MANIFEST, architecture: "arm64" }, keys.release), { now: NOW, architecture: "amd64", signers })).toThrow(expect.objectContaining({ code: "E_MANIFEST_WRONG_ARCH" }));
  });
});
