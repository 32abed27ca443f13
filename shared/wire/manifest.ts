/**
 * The signed channel manifest (DESIGN.md 3.2): what a device is told to install and how to
 * fetch it. Published at `channels/<channel>/<ref>.json` in the repo and carried inside
 * update commands.
 */
import { z } from "zod";
import { canonicalJson } from "./canonical-json.ts";
import type { Ed25519KeyPair } from "../sign/ed25519.ts";
import { signCanonical, type SignatureEntry } from "../sign/canonical-signature.ts";

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits");
const isoTime = z.string().datetime({ offset: true });

export const DeltaFileSchema = z
  .object({
    /** Path relative to the repo root, e.g. `deltas/Ab/cd…/superblock`. */
    path: z.string().regex(/^deltas\/[A-Za-z0-9_+\-/]+$/, "must be a path under deltas/"),
    size: z.number().int().nonnegative(),
    sha256: sha256Hex,
  })
  .strict();

export const DeltaSchema = z
  .object({
    /** The commit this delta upgrades from; null for a from-scratch delta. */
    from: sha256Hex.nullable(),
    /** Version string of `from`, for people. */
    fromVersion: z.string().nullable(),
    size: z.number().int().nonnegative(),
    files: z.array(DeltaFileSchema).min(1),
  })
  .strict();

export const ManifestSchema = z
  .object({
    schema: z.literal(1),
    ref: z.string().min(1),
    commit: sha256Hex,
    version: z.string().min(1),
    /** Grows by one per composed commit on a ref; anti-rollback compares it. */
    sequence: z.number().int().positive(),
    architecture: z.string().min(1),
    channel: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/),
    issued: isoTime,
    expires: isoTime,
    /** A signed permission to install a lower sequence than the booted one. */
    downgrade: z.boolean(),
    deltas: z.array(DeltaSchema),
  })
  .strict();

export const SignatureEntrySchema = z.object({ keyid: sha256Hex, sig: z.string().min(1) }).strict();

export const SignedManifestSchema = z
  .object({
    manifest: z.record(z.string(), z.unknown()),
    signatures: z.array(SignatureEntrySchema).min(1),
  })
  .strict();

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

/** Where a channel's manifest lives, relative to the repo root. */
export function manifestPath(channel: string, ref: string): string {
  return `channels/${channel}/${ref}.json`;
}
