/**
 * What a device publishes on `devices/<id>/state`: a report signed with its identity key,
 * carrying a counter that only grows, so a replayed or reordered report is refused. The broker
 * is untrusted in both directions: a report means the same through any broker.
 */
import * as z from "zod/mini";
import { describeIssue, describeIssues } from "../zod.ts";
import { AptOstreeError } from "../errors.ts";
import { signCanonical, verifyCanonical } from "../sign/canonical-signature.ts";
import { keyId, type Ed25519KeyPair } from "../sign/ed25519.ts";
import { NAME_PATTERN } from "./topics.ts";

const sha256Hex = z.string().check(z.regex(/^[0-9a-f]{64}$/));
const count = z.int().check(z.nonnegative());

export const DEVICE_STATES = ["idle", "downloading", "staged", "rebooting", "verifying", "healthy", "rolled-back", "failed"] as const;

const Deployment = z.strictObject({ commit: sha256Hex, version: z.string() });

export const ReportSchema = z.strictObject({
  deviceId: z.string().check(z.regex(NAME_PATTERN)),
  /** Strictly increasing per device, persisted by the agent. */
  counter: count,
  sent: z.iso.datetime({ offset: true }),
  state: z.enum(DEVICE_STATES),
  agentVersion: z.optional(z.string()),
  architecture: z.optional(z.string()),
  groups: z.optional(z.array(z.string().check(z.regex(NAME_PATTERN)))),
  booted: z.optional(Deployment),
  /** Finalized at the next shutdown (`ostree admin deploy --stage`). */
  staged: z.optional(z.nullable(Deployment)),
  /** What the next boot starts when it is not the booted one (rpm-ostree's "pending"): the staged or new default deployment. */
  pending: z.optional(z.nullable(Deployment)),
  /** What a rollback (or a bootloader fallback) would boot. */
  rollback: z.optional(z.nullable(Deployment)),
  /** The rollout (or command) this report answers. */
  command: z.optional(z.string()),
  progress: z.optional(z.strictObject({ bytes: count, total: count })),
  health: z.optional(
    z.array(z.strictObject({ name: z.string(), kind: z.enum(["required", "wanted"]), ok: z.boolean(), output: z.string().check(z.maxLength(16_384)) })),
  ),
  bootCounter: z.optional(z.int()),
  rolledBack: z.optional(z.strictObject({ from: Deployment, to: Deployment, reason: z.string() })),
  error: z.optional(z.string()),
});

export type Report = z.infer<typeof ReportSchema>;

export const SignedReportSchema = z.strictObject({ report: z.record(z.string(), z.unknown()), sig: z.string().check(z.minLength(1)) });

export class ReportRejectedError extends AptOstreeError {
  constructor(code: "E_REPORT_MALFORMED" | "E_REPORT_SIGNATURE" | "E_REPORT_REPLAY" | "E_REPORT_WRONG_DEVICE", message: string) {
    super(code, message);
  }
}

export function signReport(report: Report, key: Ed25519KeyPair): string {
  return JSON.stringify({ report, sig: signCanonical(report, [key])[0]!.sig });
}

/**
 * Server side: parses, checks the signature with the device's registered key, that the report
 * is from the device whose topic carried it, and that its counter is above the last one stored.
 */
export function verifyReport(payload: string | Uint8Array, expect: { deviceId: string; publicKey: Uint8Array; lastCounter: number | null }): Report {
  let document: unknown;
  try {
    document = JSON.parse(Buffer.from(payload).toString("utf8"));
  } catch {
    throw new ReportRejectedError("E_REPORT_MALFORMED", "report is not JSON");
  }
  const envelope = SignedReportSchema.safeParse(document);
  if (!envelope.success) throw new ReportRejectedError("E_REPORT_MALFORMED", `report envelope: ${describeIssue(envelope.error.issues[0]!)}`);
  const verdict = verifyCanonical(envelope.data.report, [{ keyid: keyId(expect.publicKey), sig: envelope.data.sig }], [expect.publicKey]);
  if (!verdict.ok) throw new ReportRejectedError("E_REPORT_SIGNATURE", `report on ${expect.deviceId}'s topic is not signed by ${expect.deviceId}'s key`);
  const parsed = ReportSchema.safeParse(envelope.data.report);
  if (!parsed.success) throw new ReportRejectedError("E_REPORT_MALFORMED", describeIssues(parsed.error.issues));
  const report = parsed.data;
  if (report.deviceId !== expect.deviceId) throw new ReportRejectedError("E_REPORT_WRONG_DEVICE", `report names device ${report.deviceId} but came from ${expect.deviceId}`);
  if (expect.lastCounter !== null && report.counter <= expect.lastCounter) {
    throw new ReportRejectedError("E_REPORT_REPLAY", `report counter ${report.counter} is not above the last accepted ${expect.lastCounter}: replayed or out of order`);
  }
  return report;
}
