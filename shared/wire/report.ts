/**
 * What a device publishes on `devices/<id>/state`: a report signed with its identity key,
 * carrying a counter that only grows, so a replayed or reordered report is refused. The broker
 * is untrusted in both directions: a report means the same through any broker.
 */
import { z } from "zod";
import { AptOstreeError } from "../errors.ts";
import { signCanonical, verifyCanonical } from "../sign/canonical-signature.ts";
import { keyId, type Ed25519KeyPair } from "../sign/ed25519.ts";
import { NAME_PATTERN } from "./topics.ts";

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

export const DEVICE_STATES = ["idle", "downloading", "staged", "rebooting", "verifying", "healthy", "rolled-back", "failed"] as const;

const Deployment = z.object({ commit: sha256Hex, version: z.string() }).strict();

export const ReportSchema = z
  .object({
    deviceId: z.string().regex(NAME_PATTERN),
    /** Strictly increasing per device, persisted by the agent. */
    counter: z.number().int().nonnegative(),
    sent: z.string().datetime({ offset: true }),
    state: z.enum(DEVICE_STATES),
    agentVersion: z.string().optional(),
    architecture: z.string().optional(),
    groups: z.array(z.string().regex(NAME_PATTERN)).optional(),
    booted: Deployment.optional(),
    /** Finalized at the next shutdown (`ostree admin deploy --stage`). */
    staged: Deployment.nullable().optional(),
    /** What the next boot starts when it is not the booted one (rpm-ostree's "pending"): the staged or new default deployment. */
    pending: Deployment.nullable().optional(),
    /** What a rollback (or a bootloader fallback) would boot. */
    rollback: Deployment.nullable().optional(),
    /** The rollout (or command) this report answers. */
    command: z.string().optional(),
    progress: z.object({ bytes: z.number().int().nonnegative(), total: z.number().int().nonnegative() }).strict().optional(),
    health: z
      .array(z.object({ name: z.string(), kind: z.enum(["required", "wanted"]), ok: z.boolean(), output: z.string().max(16_384) }).strict())
      .optional(),
    bootCounter: z.number().int().optional(),
    rolledBack: z.object({ from: Deployment, to: Deployment, reason: z.string() }).strict().optional(),
    error: z.string().optional(),
  })
  .strict();

export type Report = z.infer<typeof ReportSchema>;

export const SignedReportSchema = z.object({ report: z.record(z.string(), z.unknown()), sig: z.string().min(1) }).strict();

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
  if (!envelope.success) throw new ReportRejectedError("E_REPORT_MALFORMED", `report envelope: ${envelope.error.issues[0]!.message}`);
  const verdict = verifyCanonical(envelope.data.report, [{ keyid: keyId(expect.publicKey), sig: envelope.data.sig }], [expect.publicKey]);
  if (!verdict.ok) throw new ReportRejectedError("E_REPORT_SIGNATURE", `report on ${expect.deviceId}'s topic is not signed by ${expect.deviceId}'s key`);
  const parsed = ReportSchema.safeParse(envelope.data.report);
  if (!parsed.success) throw new ReportRejectedError("E_REPORT_MALFORMED", parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
  const report = parsed.data;
  if (report.deviceId !== expect.deviceId) throw new ReportRejectedError("E_REPORT_WRONG_DEVICE", `report names device ${report.deviceId} but came from ${expect.deviceId}`);
  if (expect.lastCounter !== null && report.counter <= expect.lastCounter) {
    throw new ReportRejectedError("E_REPORT_REPLAY", `report counter ${report.counter} is not above the last accepted ${expect.lastCounter}: replayed or out of order`);
  }
  return report;
}
