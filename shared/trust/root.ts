/**
 * Root metadata (docs/trust.md): the signed, versioned, expiring list of which keys hold which
 * role. Parsing bounds the document before any signature is checked; `verifyRootSelf` admits a
 * trust anchor (the image's root, or the one the device stored), `verifyNextRoot` admits the
 * next version of a chain (TUF 5.3), `checkRootFresh` refuses an expired newest root.
 */
import * as z from "zod/mini";
import { verifyCanonical, type SignatureEntry } from "../sign/canonical-signature.ts";
import { keyId } from "../sign/ed25519.ts";
import { canonicalJson } from "../wire/canonical-json.ts";
import { parseBoundedJson, type JsonLimits } from "../wire/bounded-json.ts";
import { ED25519_PUBLIC_KEY_BASE64 } from "../wire/base64.ts";
import { SignatureEntrySchema } from "../wire/manifest.ts";
import { describeIssues } from "../zod.ts";
import { TrustError } from "./errors.ts";
import { ROLE_NAMES, type RoleName, type Signers } from "./signers.ts";

export const ROOT_JSON_LIMITS: JsonLimits = { maxBytes: 128 * 1024, maxDepth: 8, maxNodes: 4000 };
export const MAX_ROOT_KEYS = 32;
export const MAX_ROLE_KEYS = 8;
export const MAX_REVOKED_KEYS = 256;
/** Old root keys and new ones both sign a rotation. */
export const MAX_ROOT_SIGNATURES = 16;

const sha256Hex = z.string().check(z.regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"));
const publicKeyBase64 = z.string().check(z.regex(ED25519_PUBLIC_KEY_BASE64, "must be a base64 ed25519 public key"));

const RoleSchema = z.strictObject({
  keyids: z.array(sha256Hex).check(z.minLength(1, "a role needs a key"), z.maxLength(MAX_ROLE_KEYS, `at most ${MAX_ROLE_KEYS} keys per role`)),
  threshold: z.int().check(z.minimum(1), z.maximum(MAX_ROLE_KEYS)),
});

export const RootSchema = z.strictObject({
  schema: z.literal(1),
  version: z.int().check(z.positive()),
  expires: z.iso.datetime({ offset: true }),
  keys: z.record(sha256Hex, z.strictObject({ type: z.literal("ed25519"), public: publicKeyBase64 })),
  roles: z.strictObject({ root: RoleSchema, image: RoleSchema, release: RoleSchema, command: RoleSchema }),
  revoked: z.record(sha256Hex, publicKeyBase64),
});

export const SignedRootSchema = z.strictObject({
  root: z.record(z.string(), z.unknown()),
  signatures: z.array(SignatureEntrySchema).check(z.minLength(1, "at least one signature"), z.maxLength(MAX_ROOT_SIGNATURES, `at most ${MAX_ROOT_SIGNATURES} signatures`)),
});

export type Root = z.infer<typeof RootSchema>;
export interface SignedRoot {
  root: Root;
  signatures: SignatureEntry[];
}

export class RootMalformedError extends TrustError {
  constructor(source: string, problem: string) {
    super("E_ROOT_MALFORMED", `${source}: not a valid root: ${problem}`);
  }
}
export class RootVersionError extends TrustError {
  constructor(source: string, got: number, expected: number) {
    super("E_ROOT_VERSION", `${source}: root version ${got} where version ${expected} was expected; ${got < expected ? "a root never goes back" : "root versions are walked one by one"}`);
  }
}
export class RootThresholdError extends TrustError {
  constructor(source: string, which: "old" | "new", verdict: string, threshold: number, version: number) {
    const whose = which === "old" ? `the trusted root version ${version - 1}'s` : `its own (version ${version})`;
    super(which === "old" ? "E_ROOT_OLD_THRESHOLD" : "E_ROOT_NEW_THRESHOLD", `${source}: root version ${version} is not signed by ${threshold} of ${whose} root keys (${verdict})`);
  }
}
export class RootExpiredError extends TrustError {
  constructor(version: number, expires: string, now: Date) {
    super("E_ROOT_EXPIRED", `the newest trusted root (version ${version}) expired at ${expires} (now ${now.toISOString()}); the fleet's root holders must publish a new root version (keys rotate/sign-root)`);
  }
}

/** Bounds, envelope and schema of a root document, then its internal rules; no signature is checked. */
export function parseSignedRoot(input: string | Uint8Array, source: string): SignedRoot {
  let document: unknown;
  try {
    document = parseBoundedJson(input, ROOT_JSON_LIMITS);
  } catch (error) {
    throw new RootMalformedError(source, (error as Error).message);
  }
  const envelope = SignedRootSchema.safeParse(document);
  if (!envelope.success) throw new RootMalformedError(source, describeIssues(envelope.error.issues));
  const parsed = RootSchema.safeParse(envelope.data.root);
  if (!parsed.success) throw new RootMalformedError(source, describeIssues(parsed.error.issues));
  checkRootRules(parsed.data, source);
  return { root: parsed.data, signatures: envelope.data.signatures };
}

/** Each key belongs to its id and to exactly one role; thresholds can be met; revoked keys hold no role. */
export function checkRootRules(root: Root, source: string): void {
  const keyids = Object.keys(root.keys);
  if (keyids.length > MAX_ROOT_KEYS) throw new RootMalformedError(source, `${keyids.length} keys, at most ${MAX_ROOT_KEYS}`);
  if (Object.keys(root.revoked).length > MAX_REVOKED_KEYS) throw new RootMalformedError(source, `more than ${MAX_REVOKED_KEYS} revoked keys`);
  for (const [id, key] of Object.entries(root.keys)) {
    if (keyId(Buffer.from(key.public, "base64")) !== id) throw new RootMalformedError(source, `key ${id.slice(0, 16)} is not the sha256 of its public key`);
  }
  for (const [id, publicKey] of Object.entries(root.revoked)) {
    if (keyId(Buffer.from(publicKey, "base64")) !== id) throw new RootMalformedError(source, `revoked key ${id.slice(0, 16)} is not the sha256 of its public key`);
  }
  const holder = new Map<string, RoleName>();
  for (const role of ROLE_NAMES) {
    const { keyids: ids, threshold } = root.roles[role];
    if (new Set(ids).size !== ids.length) throw new RootMalformedError(source, `role ${role} lists a key twice`);
    if (threshold > ids.length) throw new RootMalformedError(source, `role ${role} has threshold ${threshold} but only ${ids.length} key(s)`);
    for (const id of ids) {
      if (!(id in root.keys)) throw new RootMalformedError(source, `role ${role} names key ${id.slice(0, 16)}, which is not in keys`);
      if (id in root.revoked) throw new RootMalformedError(source, `role ${role} names key ${id.slice(0, 16)}, which is revoked`);
      const other = holder.get(id);
      if (other) throw new RootMalformedError(source, `key ${id.slice(0, 16)} holds two roles (${other} and ${role}); a key holds one role`);
      holder.set(id, role);
    }
  }
  const unused = keyids.find((id) => !holder.has(id));
  if (unused) throw new RootMalformedError(source, `key ${unused.slice(0, 16)} holds no role`);
}

/** The keys a document of `role` must be signed by, under this root. */
export function signersFor(root: Root, role: RoleName): Signers {
  const publicKey = (id: string) => new Uint8Array(Buffer.from(root.keys[id]!.public, "base64"));
  const otherRoles = new Map<string, { role: RoleName; publicKey: Uint8Array }>();
  for (const other of ROLE_NAMES) {
    if (other === role) continue;
    for (const id of root.roles[other].keyids) otherRoles.set(id, { role: other, publicKey: publicKey(id) });
  }
  return {
    role,
    keys: new Map(root.roles[role].keyids.map((id) => [id, publicKey(id)])),
    threshold: root.roles[role].threshold,
    revoked: new Map(Object.entries(root.revoked).map(([id, key]) => [id, new Uint8Array(Buffer.from(key, "base64"))])),
    otherRoles,
    rootVersion: root.version,
  };
}

function describeVerdict(verdict: ReturnType<typeof verifyCanonical>): string {
  if (verdict.ok) return "valid";
  if (verdict.reason === "threshold") return `${verdict.valid} valid`;
  if (verdict.reason === "unknown-key") return "signed only by other keys";
  return `${verdict.reason} key ${verdict.keyid.slice(0, 16)}`;
}

function checkSignedBy(signed: SignedRoot, signers: Root, which: "old" | "new", source: string): void {
  const roleSigners = signersFor(signers, "root");
  const verdict = verifyCanonical(signed.root, signed.signatures, roleSigners, MAX_ROOT_SIGNATURES);
  if (!verdict.ok) throw new RootThresholdError(source, which, describeVerdict(verdict), roleSigners.threshold, signed.root.version);
}

/** A trust anchor (shipped in the image, or stored by the device): signed by a threshold of its own root keys. */
export function verifyRootSelf(input: string | Uint8Array, source: string): SignedRoot {
  const signed = parseSignedRoot(input, source);
  checkSignedBy(signed, signed.root, "new", source);
  return signed;
}

/** The root version after `trusted`, admitted only by the rules of docs/trust.md (Rotation). */
export function verifyNextRoot(trusted: Root, input: string | Uint8Array, source: string): SignedRoot {
  const signed = parseSignedRoot(input, source);
  const next = signed.root;
  if (next.version !== trusted.version + 1) throw new RootVersionError(source, next.version, trusted.version + 1);
  checkSignedBy(signed, trusted, "old", source);
  checkSignedBy(signed, next, "new", source);
  const unrevoked = Object.keys(trusted.revoked).find((id) => !(id in next.revoked));
  if (unrevoked) throw new RootMalformedError(source, `root version ${next.version} un-revokes key ${unrevoked.slice(0, 16)}; a revoked key never comes back`);
  return signed;
}

export function checkRootFresh(root: Root, now: Date): void {
  if (Date.parse(root.expires) <= now.getTime()) throw new RootExpiredError(root.version, root.expires, now);
}

/** The file as published: canonical JSON and a newline, so every copy of a version is byte-identical. */
export function serializeSignedRoot(signed: SignedRoot): string {
  return `${canonicalJson(signed)}\n`;
}
