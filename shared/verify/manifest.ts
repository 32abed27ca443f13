/**
 * Device-side checks of a signed manifest, in the order that fails cheapest and safest:
 * envelope, signature by a pinned key, schema, expiry, architecture, channel, ref, anti-rollback.
 * Each rejection is its own error class so the agent can report it precisely.
 */
import { AptOstreeError } from "../errors.ts";
import { verifyCanonical } from "../sign/canonical-signature.ts";
import type { Signers } from "../trust/signers.ts";
import { refusalFor } from "../trust/verdict.ts";
import { ManifestSchema, SignedManifestSchema, type Manifest } from "../wire/manifest.ts";
import { describeIssues } from "../zod.ts";
import { checkJsonValue, parseBoundedJson, type JsonLimits } from "../wire/bounded-json.ts";

/** A channel manifest: deltas from a few versions, each a superblock and its parts. */
export const MANIFEST_JSON_LIMITS: JsonLimits = { maxBytes: 1024 * 1024, maxDepth: 10, maxNodes: 50_000 };

export abstract class ManifestRejectedError extends AptOstreeError {}

export class MalformedManifestError extends ManifestRejectedError {
  constructor(message: string) {
    super("E_MANIFEST_MALFORMED", `malformed manifest: ${message}`);
  }
}
export class UnknownManifestKeyError extends ManifestRejectedError {
  constructor(keyIds: string[]) {
    super("E_MANIFEST_UNKNOWN_KEY", `manifest is signed only by unknown key(s) ${keyIds.map((k) => k.slice(0, 16)).join(", ")}; no release key of the trusted root (or pinned key) signed it`);
  }
}
export class ManifestSignatureError extends ManifestRejectedError {
  constructor(keyIdHex: string) {
    super("E_MANIFEST_BAD_SIGNATURE", `manifest signature by trusted key ${keyIdHex.slice(0, 16)} does not verify: the manifest was altered or the signature is corrupt`);
  }
}
export class ManifestExpiredError extends ManifestRejectedError {
  constructor(expires: string, now: Date) {
    super("E_MANIFEST_EXPIRED", `manifest expired at ${expires} (now ${now.toISOString()}); the server must publish a fresh one`);
  }
}
export class WrongArchitectureError extends ManifestRejectedError {
  constructor(got: string, expected: string) {
    super("E_MANIFEST_WRONG_ARCH", `manifest is for architecture ${got}, this device is ${expected}`);
  }
}
export class WrongChannelError extends ManifestRejectedError {
  constructor(got: string, expected: string) {
    super("E_MANIFEST_WRONG_CHANNEL", `manifest is for channel ${got}, this device follows ${expected}`);
  }
}
export class WrongRefError extends ManifestRejectedError {
  constructor(got: string, expected: string) {
    super("E_MANIFEST_WRONG_REF", `manifest is for ref ${got}, this device follows ${expected}`);
  }
}
export class RollbackRejectedError extends ManifestRejectedError {
  constructor(got: number, floor: number, which: "booted" | "accepted") {
    super("E_MANIFEST_ROLLBACK", `manifest sequence ${got} is older than the ${which === "booted" ? "booted sequence" : "highest sequence this device accepted for the ref,"} ${floor} and is not a signed downgrade`);
  }
}
export class DowngradeRefusedError extends ManifestRejectedError {
  constructor(message: string) {
    super("E_MANIFEST_DOWNGRADE", message);
  }
}

/** A signed downgrade is valid for hours at most (docs/trust.md, Anti-rollback). */
export const MAX_DOWNGRADE_LIFETIME_MS = 12 * 3600 * 1000;
/** How far ahead of the device's clock a downgrade's issue time may be. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

export interface ManifestExpectations {
  /** The release role's keys (or legacy pinned keys). */
  signers: Signers;
  now: Date;
  architecture: string;
  /** The channel the device follows; omit to accept any. */
  channel?: string;
  /** The ref the device follows; omit to accept any (e.g. a rebase the admin asked for). */
  ref?: string;
  /** Sequence of the booted commit; omit when unknown (first install). */
  bootedSequence?: number;
  /** The highest sequence this device ever accepted for the manifest's ref (persisted by the agent). */
  acceptedSequence?: number;
  /** A signed downgrade may pass: only for an update command of a rollout, addressed to this device. */
  downgradeAllowed?: boolean;
}

export function verifySignedManifest(input: unknown, expect: ManifestExpectations): Manifest {
  const envelope = SignedManifestSchema.safeParse(typeof input === "string" ? parseJson(input) : checkBounds(input));
  if (!envelope.success) throw new MalformedManifestError(describeIssues(envelope.error.issues));

  const verdict = verifyCanonical(envelope.data.manifest, envelope.data.signatures, expect.signers);
  if (!verdict.ok && verdict.reason === "unknown-key") throw new UnknownManifestKeyError(verdict.keyids);
  if (!verdict.ok && verdict.reason === "bad-signature") throw new ManifestSignatureError(verdict.keyid);
  if (!verdict.ok) throw refusalFor(verdict, "manifest", expect.signers);

  const parsed = ManifestSchema.safeParse(envelope.data.manifest);
  if (!parsed.success) throw new MalformedManifestError(describeIssues(parsed.error.issues));
  const manifest = parsed.data;

  if (Date.parse(manifest.expires) <= expect.now.getTime()) throw new ManifestExpiredError(manifest.expires, expect.now);
  if (manifest.architecture !== expect.architecture) throw new WrongArchitectureError(manifest.architecture, expect.architecture);
  if (expect.channel !== undefined && manifest.channel !== expect.channel) throw new WrongChannelError(manifest.channel, expect.channel);
  if (expect.ref !== undefined && manifest.ref !== expect.ref) throw new WrongRefError(manifest.ref, expect.ref);
  checkSequence(manifest, expect);
  return manifest;
}

/** Anti-rollback: never below the booted sequence nor the highest accepted, unless a bound, short-lived signed downgrade. */
function checkSequence(manifest: Manifest, expect: ManifestExpectations): void {
  const { bootedSequence: booted = 0, acceptedSequence: accepted = 0 } = expect;
  const floor = Math.max(booted, accepted);
  if (manifest.sequence >= floor) return;
  if (!manifest.downgrade) throw new RollbackRejectedError(manifest.sequence, floor, booted >= accepted ? "booted" : "accepted");
  if (!expect.downgradeAllowed) {
    throw new DowngradeRefusedError(`manifest sequence ${manifest.sequence} is a signed downgrade from ${floor}; a downgrade is taken only from a rollout's command to this device, not from the channel`);
  }
  // Both ends count: a downgrade issued in the future would stay usable long after its window.
  const issued = Date.parse(manifest.issued);
  const lifetime = Date.parse(manifest.expires) - Math.min(issued, expect.now.getTime());
  if (issued > expect.now.getTime() + CLOCK_SKEW_MS || lifetime > MAX_DOWNGRADE_LIFETIME_MS) {
    throw new DowngradeRefusedError(`manifest sequence ${manifest.sequence} is a signed downgrade valid until ${manifest.expires} (issued ${manifest.issued}); a downgrade may be valid for ${MAX_DOWNGRADE_LIFETIME_MS / 3600_000} h at most from now`);
  }
}

/**
 * A manifest handed over as an object gets the bounds its text would: JSON.parse takes 1e999
 * (Infinity) and any depth, which canonical JSON then cannot encode or overflows the stack on.
 */
function checkBounds(value: unknown): unknown {
  try {
    checkJsonValue(value, MANIFEST_JSON_LIMITS);
  } catch (error) {
    throw new MalformedManifestError((error as Error).message);
  }
  return value;
}

function parseJson(text: string): unknown {
  try {
    return parseBoundedJson(text, MANIFEST_JSON_LIMITS);
  } catch (error) {
    throw new MalformedManifestError((error as Error).message);
  }
}
