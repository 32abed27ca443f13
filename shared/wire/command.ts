/**
 * What the server publishes on `devices/<id>/cmd`: a command signed with the server's key (the
 * broker is not trusted), naming the device it is for and when it was issued. An update command
 * carries the signed manifest, which the device verifies on its own as well.
 */
import * as z from "zod/mini";
import { describeIssue, describeIssues } from "../zod.ts";
import { AptOstreeError } from "../errors.ts";
import { signCanonical, verifyCanonical, type SignatureEntry } from "../sign/canonical-signature.ts";
import type { Signers } from "../trust/signers.ts";
import { refusalFor } from "../trust/verdict.ts";
import type { Ed25519KeyPair } from "../sign/ed25519.ts";
import { JsonRefusedError, parseBoundedJson, type JsonLimits } from "./bounded-json.ts";
import { SignaturesSchema, SignedManifestSchema } from "./manifest.ts";
import { NAME_PATTERN } from "./topics.ts";

/** A command's JSON, manifest included: it fits a device's 64 KiB MQTT packet. */
export const COMMAND_JSON_LIMITS: JsonLimits = { maxBytes: 64 * 1024, maxDepth: 12, maxNodes: 5000 };

const commandId = z.string().check(z.minLength(1));
/** When the server signed it: a device refuses one older than the last it accepted. */
const issued = z.iso.datetime({ offset: true });
/**
 * The one device the command is for, under the signature: a copy on another device's topic is
 * refused there. (Rollouts address devices one by one; nothing is published on group topics.)
 */
const device = z.string().check(z.regex(NAME_PATTERN));

export const CommandSchema = z.discriminatedUnion("type", [
  /** `repo`: where to fetch it, when a static host serves the repo apart from the server (`serve --repo-url`); absent: the device's own setting. */
  z.strictObject({ type: z.literal("update"), id: commandId, device, issued, rollout: z.optional(z.string()), repo: z.optional(z.string().check(z.maxLength(2048), z.regex(/^https?:\/\/\S+$/))), manifest: SignedManifestSchema }),
  z.strictObject({ type: z.literal("reboot"), id: commandId, device, issued }),
  z.strictObject({ type: z.literal("rollback"), id: commandId, device, issued }),
  /**
   * Update command `id` is withdrawn: its rollout was paused (a device that has not started must
   * not start) or aborted (a download in progress stops too). Retained in the update command's
   * place, so a device that connects later gets this instead; being signed and newer, it also
   * makes the device refuse the update command if a stale copy of it arrives afterwards. `commit`
   * is the withdrawn update's: a device that never saw the update still knows what not to install
   * when it polls the channel with the broker unreachable (device/agent/poll.ts).
   */
  z.strictObject({ type: z.literal("withdraw"), id: commandId, device, issued, reason: z.enum(["paused", "aborted"]), commit: z.optional(z.string().check(z.regex(/^[0-9a-f]{64}$/))) }),
]);

export type Command = z.infer<typeof CommandSchema>;

/** A command and 1 to MAX_SIGNATURES signatures, each a key id and an 88-character signature: checked before any is verified. */
export const SignedCommandSchema = z.strictObject({ command: z.record(z.string(), z.unknown()), signatures: SignaturesSchema });

export class CommandRejectedError extends AptOstreeError {
  /** "unknown-key": signed only by keys the device does not know (a newer root may name them). */
  readonly reason: "unknown-key" | "other";
  constructor(message: string, reason: "unknown-key" | "other" = "other") {
    super("E_COMMAND_REJECTED", message);
    this.reason = reason;
  }
}

export function signCommand(command: Command, keys: Ed25519KeyPair[]): string {
  const signatures: SignatureEntry[] = signCanonical(command, keys);
  return JSON.stringify({ command, signatures });
}

/** Device side: a command counts only when the command role's keys signed it (a threshold of them). */
export function verifyCommand(payload: string | Uint8Array, signers: Signers): Command {
  let document: unknown;
  try {
    document = parseBoundedJson(payload, COMMAND_JSON_LIMITS);
  } catch (error) {
    throw new CommandRejectedError(`command refused: ${(error as JsonRefusedError).message}`);
  }
  const envelope = SignedCommandSchema.safeParse(document);
  if (!envelope.success) throw new CommandRejectedError(`malformed command envelope: ${describeIssue(envelope.error.issues[0]!)}`);
  const verdict = verifyCanonical(envelope.data.command, envelope.data.signatures, signers);
  if (!verdict.ok && verdict.reason === "unknown-key") throw new CommandRejectedError("command is signed only by unknown keys", "unknown-key");
  if (!verdict.ok && verdict.reason === "bad-signature") throw new CommandRejectedError("command signature does not verify");
  if (!verdict.ok) throw refusalFor(verdict, "command", signers);
  const parsed = CommandSchema.safeParse(envelope.data.command);
  if (!parsed.success) throw new CommandRejectedError(`malformed command: ${describeIssues(parsed.error.issues)}`);
  return parsed.data;
}
