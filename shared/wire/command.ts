/**
 * What the server publishes on `devices/<id>/cmd` and `groups/<group>/cmd`: a command signed
 * with the server's key (the broker is not trusted). An update command carries the signed
 * manifest, which the device verifies on its own as well.
 */
import { z } from "zod";
import { AptOstreeError } from "../errors.ts";
import { signCanonical, verifyCanonical, type SignatureEntry } from "../sign/canonical-signature.ts";
import type { Ed25519KeyPair } from "../sign/ed25519.ts";
import { SignatureEntrySchema, SignedManifestSchema } from "./manifest.ts";

export const CommandSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("update"), id: z.string().min(1), issued: z.string().datetime({ offset: true }), rollout: z.string().optional(), manifest: SignedManifestSchema }).strict(),
  z.object({ type: z.literal("reboot"), id: z.string().min(1), issued: z.string().datetime({ offset: true }) }).strict(),
  z.object({ type: z.literal("rollback"), id: z.string().min(1), issued: z.string().datetime({ offset: true }) }).strict(),
]);

export type Command = z.infer<typeof CommandSchema>;

export const SignedCommandSchema = z.object({ command: z.record(z.string(), z.unknown()), signatures: z.array(SignatureEntrySchema).min(1) }).strict();

export class CommandRejectedError extends AptOstreeError {
  constructor(message: string) {
    super("E_COMMAND_REJECTED", message);
  }
}

export function signCommand(command: Command, keys: Ed25519KeyPair[]): string {
  const signatures: SignatureEntry[] = signCanonical(command, keys);
  return JSON.stringify({ command, signatures });
}

/** Device side: a command counts only when a pinned server key signed it. */
export function verifyCommand(payload: string | Uint8Array, trustedKeys: Uint8Array[]): Command {
  let document: unknown;
  try {
    document = JSON.parse(Buffer.from(payload).toString("utf8"));
  } catch {
    throw new CommandRejectedError("command is not JSON");
  }
  const envelope = SignedCommandSchema.safeParse(document);
  if (!envelope.success) throw new CommandRejectedError(`malformed command envelope: ${envelope.error.issues[0]!.message}`);
  const verdict = verifyCanonical(envelope.data.command, envelope.data.signatures, trustedKeys);
  if (!verdict.ok) throw new CommandRejectedError(verdict.reason === "unknown-key" ? "command is signed only by unknown keys" : "command signature does not verify");
  const parsed = CommandSchema.safeParse(envelope.data.command);
  if (!parsed.success) throw new CommandRejectedError(`malformed command: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return parsed.data;
}
