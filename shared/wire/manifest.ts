/**
 * The signed channel manifest (DESIGN.md 3.2): what a device is told to install and how to
 * fetch it. Published at `channels/<channel>/<ref>.json` in the repo and carried inside
 * update commands.
 */
import * as z from "zod/mini";
import { canonicalJson } from "./canonical-json.ts";
import { ED25519_SIGNATURE_BASE64 } from "./base64.ts";
import type { Ed25519KeyPair } from "../sign/ed25519.ts";
import { MAX_SIGNATURES, signCanonical, type SignatureEntry } from "../sign/canonical-signature.ts";

const sha256Hex = z.string().check(z.regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"));
const isoTime = z.iso.datetime({ offset: true });
const nonEmpty = z.string().check(z.minLength(1));
const byteCount = z.int().check(z.nonnegative());

/** OSTree's ref grammar (`ostree_validate_rev`): slash-separated segments, none starting with `.` or `-`. */
export const REF_PATTERN = /^[A-Za-z0-9_][-._A-Za-z0-9]*(\/[A-Za-z0-9_][-._A-Za-z0-9]*)*$/;
export const CHANNEL_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export const DeltaFileSchema = z.strictObject({
  /** Path relative to the repo root, e.g. `deltas/Ab/cd…/superblock`. */
  path: z.string().check(z.regex(/^deltas\/[A-Za-z0-9_+\-/]+$/, "must be a path under deltas/")),
  size: byteCount,
  sha256: sha256Hex,
});

export const DeltaSchema = z.strictObject({
  /** The commit this delta upgrades from; null for a from-scratch delta. */
  from: z.nullable(sha256Hex),
  /** Version string of `from`, for people. */
  fromVersion: z.nullable(z.string()),
  size: byteCount,
  files: z.array(DeltaFileSchema).check(z.minLength(1)),
});

export const ManifestSchema = z.strictObject({
  schema: z.literal(1),
  ref: z.string().check(z.regex(REF_PATTERN, "is not an OSTree ref"), z.maxLength(255)),
  commit: sha256Hex,
  version: nonEmpty,
  /** Grows by one per composed commit on a ref; anti-rollback compares it. */
  sequence: z.int().check(z.positive()),
  architecture: nonEmpty,
  channel: z.string().check(z.regex(CHANNEL_PATTERN)),
  issued: isoTime,
  expires: isoTime,
  /** A signed permission to install a lower sequence than the booted one. */
  downgrade: z.boolean(),
  deltas: z.array(DeltaSchema),
});

/** An ed25519 signature (64 bytes) in padded base64 as Buffer writes it: 88 characters (RFC 4648, 4). */
const ed25519SignatureBase64 = z.string().check(z.regex(ED25519_SIGNATURE_BASE64, "must be a 64-byte ed25519 signature in base64 (88 characters)"));

/** `keyid`: sha256 of the public key in hex (DESIGN.md 3.2); `sig`: the signature of the canonical JSON. */
export const SignatureEntrySchema = z.strictObject({ keyid: sha256Hex, sig: ed25519SignatureBase64 });

/**
 * The signatures beside a signed document: 1 to MAX_SIGNATURES (8). zod checks the count before
 * the entries, so a document with thousands is refused here, before any ed25519 verification.
 */
export const SignaturesSchema = z.array(SignatureEntrySchema).check(z.minLength(1, "at least one signature"), z.maxLength(MAX_SIGNATURES, `at most ${MAX_SIGNATURES} signatures`));

export const SignedManifestSchema = z.strictObject({
  manifest: z.record(z.string(), z.unknown()),
  signatures: SignaturesSchema,
});

export type DeltaFile = z.infer<typeof DeltaFileSchema>;
export type Delta = z.infer<typeof DeltaSchema>;
export type Manifest = z.infer<typeof ManifestSchema>;
export type { SignatureEntry };
export interface SignedManifest {
  manifest: Manifest;
  signatures: SignatureEntry[];
}

export function signManifest(manifest: Manifest, keys: Ed25519KeyPair[]): SignedManifest {
  return { manifest, signatures: signCanonical(manifest, keys) };
}

/** The manifest file as published: canonical JSON and a newline. */
export function serializeSignedManifest(signed: SignedManifest): string {
  return `${canonicalJson(signed)}\n`;
}

/** Where a channel's manifest lives, relative to the repo root; refuses names that could leave `channels/`. */
export function manifestPath(channel: string, ref: string): string {
  if (!CHANNEL_PATTERN.test(channel)) throw new RangeError(`'${channel.slice(0, 80)}' is not a channel name (lowercase letters, digits, '.', '_', '-')`);
  if (!REF_PATTERN.test(ref) || ref.length > 255) throw new RangeError(`'${ref.slice(0, 80)}' is not an OSTree ref`);
  return `channels/${channel}/${ref}.json`;
}
