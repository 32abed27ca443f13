/**
 * What a device publishes on `devices/<id>/state`: a report signed with its identity key,
 * carrying a counter that only grows, so a replayed or reordered report is refused. The broker
 * is untrusted in both directions: a report means the same through any broker.
 */
import * as z from "zod/mini";
import { describeIssue, describeIssues } from "../zod.ts";
import { AptOstreeError } from "../errors.ts";
import { signCanonical, verifyCanonical } from "../sign/canonical-signature.ts";
import { anyOf } from "../trust/signers.ts";
import { keyId, type Ed25519KeyPair } from "../sign/ed25519.ts";
import { JsonRefusedError, parseBoundedJson, type JsonLimits } from "./bounded-json.ts";
import { NAME_PATTERN } from "./topics.ts";
import { ED25519_SIGNATURE_BASE64 } from "./base64.ts";

/**
 * Bounds of a report, so every string the server stores from a device is bounded. The agent
 * fits its reports to them (`fitReport`) before signing; the server refuses what exceeds them.
 */
export const REPORT_LIMITS = {
  /** Versions, agent version, architecture, command ids, check names. */
  shortText: 256,
  /** A health check's output (its tail), an error, a rollback's reason. */
  longText: 2048,
  healthChecks: 16,
  groups: 32,
  /** Names per list of the booted deployment's package layering (the device cuts a longer list and says so). */
  layeredNames: 64,
} as const;

/** A signed report's JSON: 16 checks of 2 KiB each and the rest fit with room to spare. */
export const REPORT_JSON_LIMITS: JsonLimits = { maxBytes: 60 * 1024, maxDepth: 8, maxNodes: 2000 };

const sha256Hex = z.string().check(z.regex(/^[0-9a-f]{64}$/));
const count = z.int().check(z.nonnegative());
const shortText = z.string().check(z.maxLength(REPORT_LIMITS.shortText));
const longText = z.string().check(z.maxLength(REPORT_LIMITS.longText));

export const DEVICE_STATES = ["idle", "downloading", "staged", "rebooting", "verifying", "healthy", "rolled-back", "failed"] as const;

const Deployment = z.strictObject({ commit: sha256Hex, version: shortText });

const packageNames = z.array(z.string().check(z.regex(/^[a-z0-9][a-z0-9+.-]{0,99}$/))).check(z.maxLength(REPORT_LIMITS.layeredNames));
/**
 * The booted deployment, and on a device with package layering (docs/layering.md) what was layered
 * on its signed release (`commit` is that release): only sent when there is some, so servers
 * older than the field still take the reports of devices that layer nothing.
 */
const BootedDeployment = z.strictObject({
  commit: sha256Hex,
  version: shortText,
  layered: z.optional(z.strictObject({ packages: packageNames, removed: packageNames, replaced: packageNames, truncated: z.optional(z.boolean()) })),
});

export const ReportSchema = z.strictObject({
  deviceId: z.string().check(z.regex(NAME_PATTERN)),
  /** Strictly increasing per device, persisted by the agent. */
  counter: count,
  sent: z.iso.datetime({ offset: true }),
  state: z.enum(DEVICE_STATES),
  agentVersion: z.optional(shortText),
  architecture: z.optional(shortText),
  groups: z.optional(z.array(z.string().check(z.regex(NAME_PATTERN))).check(z.maxLength(REPORT_LIMITS.groups))),
  booted: z.optional(BootedDeployment),
  /** Finalized at the next shutdown (`ostree admin deploy --stage`). */
  staged: z.optional(z.nullable(Deployment)),
  /** What the next boot starts when it is not the booted one (rpm-ostree's "pending"): the staged or new default deployment. */
  pending: z.optional(z.nullable(Deployment)),
  /** What a rollback (or a bootloader fallback) would boot. */
  rollback: z.optional(z.nullable(Deployment)),
  /** The rollout (or command) this report answers. */
  command: z.optional(shortText),
  progress: z.optional(z.strictObject({ bytes: count, total: count })),
  health: z.optional(
    z.array(z.strictObject({ name: shortText, kind: z.enum(["required", "wanted"]), ok: z.boolean(), output: longText })).check(z.maxLength(REPORT_LIMITS.healthChecks)),
  ),
  bootCounter: z.optional(z.int()),
  rolledBack: z.optional(z.strictObject({ from: Deployment, to: Deployment, reason: longText })),
  error: z.optional(longText),
});

export type Report = z.infer<typeof ReportSchema>;

export const SignedReportSchema = z.strictObject({ report: z.record(z.string(), z.unknown()), sig: z.string().check(z.regex(ED25519_SIGNATURE_BASE64, "must be a 64-byte ed25519 signature in base64 (88 characters)")) });

export class ReportRejectedError extends AptOstreeError {
  constructor(
    code: "E_REPORT_MALFORMED" | "E_REPORT_SIGNATURE" | "E_REPORT_REPLAY" | "E_REPORT_WRONG_DEVICE",
    message: string,
    /**
     * The counter stored last, again: a second delivery of a report already taken (every server
     * instance on one broker receives each report), not an older one replayed.
     */
    readonly duplicate = false,
  ) {
    super(code, message);
  }
}

export function signReport(report: Report, key: Ed25519KeyPair): string {
  return JSON.stringify({ report, sig: signCanonical(report, [key])[0]!.sig });
}

/**
 * The report cut to REPORT_LIMITS: long texts keep their end (where an error or a check's
 * output says what happened), failed checks are kept before passed ones.
 */
export function fitReport(report: Report): Report {
  const short = (text: string) => text.slice(0, REPORT_LIMITS.shortText);
  const long = (text: string) => (text.length > REPORT_LIMITS.longText ? `…${text.slice(-(REPORT_LIMITS.longText - 1))}` : text);
  const deployment = <D extends { commit: string; version: string } | null | undefined>(d: D): D => (d ? { ...d, version: short(d.version) } : d);
  const fitted: Report = { ...report };
  if (fitted.agentVersion !== undefined) fitted.agentVersion = short(fitted.agentVersion);
  if (fitted.architecture !== undefined) fitted.architecture = short(fitted.architecture);
  if (fitted.command !== undefined) fitted.command = short(fitted.command);
  if (fitted.groups) fitted.groups = fitted.groups.slice(0, REPORT_LIMITS.groups);
  fitted.booted = deployment(fitted.booted);
  fitted.staged = deployment(fitted.staged);
  fitted.pending = deployment(fitted.pending);
  fitted.rollback = deployment(fitted.rollback);
  if (fitted.health) {
    const failedFirst = [...fitted.health.filter((c) => !c.ok), ...fitted.health.filter((c) => c.ok)];
    fitted.health = failedFirst.slice(0, REPORT_LIMITS.healthChecks).map((c) => ({ ...c, name: short(c.name), output: long(c.output) }));
  }
  if (fitted.rolledBack) fitted.rolledBack = { from: deployment(fitted.rolledBack.from), to: deployment(fitted.rolledBack.to), reason: long(fitted.rolledBack.reason) };
  if (fitted.error !== undefined) fitted.error = long(fitted.error);
  for (const key of Object.keys(fitted) as (keyof Report)[]) if (fitted[key] === undefined) delete fitted[key];
  return fitted;
}

/**
 * Server side: parses, checks the signature with the device's registered key, that the report
 * is from the device whose topic carried it, and that its counter is above the last one stored.
 */
export function verifyReport(payload: string | Uint8Array, expect: { deviceId: string; publicKey: Uint8Array; lastCounter: number | null }): Report {
  let document: unknown;
  try {
    document = parseBoundedJson(payload, REPORT_JSON_LIMITS);
  } catch (error) {
    throw new ReportRejectedError("E_REPORT_MALFORMED", `report refused: ${(error as JsonRefusedError).message}`);
  }
  const envelope = SignedReportSchema.safeParse(document);
  if (!envelope.success) throw new ReportRejectedError("E_REPORT_MALFORMED", `report envelope: ${describeIssue(envelope.error.issues[0]!)}`);
  const verdict = verifyCanonical(envelope.data.report, [{ keyid: keyId(expect.publicKey), sig: envelope.data.sig }], anyOf([expect.publicKey]));
  if (!verdict.ok) throw new ReportRejectedError("E_REPORT_SIGNATURE", `report on ${expect.deviceId}'s topic is not signed by ${expect.deviceId}'s key`);
  const parsed = ReportSchema.safeParse(envelope.data.report);
  if (!parsed.success) throw new ReportRejectedError("E_REPORT_MALFORMED", describeIssues(parsed.error.issues));
  const report = parsed.data;
  if (report.deviceId !== expect.deviceId) throw new ReportRejectedError("E_REPORT_WRONG_DEVICE", `report names device ${report.deviceId} but came from ${expect.deviceId}`);
  if (expect.lastCounter !== null && report.counter <= expect.lastCounter) {
    throw new ReportRejectedError("E_REPORT_REPLAY", `report counter ${report.counter} is not above the last accepted ${expect.lastCounter}: replayed or out of order`, report.counter === expect.lastCounter);
  }
  return report;
}
