/**
 * What the cases against the agent process share: the device, the keys, fresh commands sent
 * through the fuzz broker, and the agent's refusals named by error code (from its log events,
 * its reports and its state file).
 */
import type { Command } from "../../../shared/wire/command.ts";
import type { SignedManifest } from "../../../shared/wire/manifest.ts";
import { generateKeyPair, type Ed25519KeyPair } from "../../../shared/sign/ed25519.ts";
import { DEVICE_ID } from "../../helpers/agent-fixture.ts";
import type { FuzzDevice, LogEvent } from "./device.ts";
import { commandRefusalKind } from "./in-process.ts";

export interface ProcessContext {
  device: FuzzDevice;
  pinned: Ed25519KeyPair;
  stranger: Ed25519KeyPair;
  commands: number;
}

export function processContext(device: FuzzDevice): ProcessContext {
  return { device, pinned: device.fixture.key, stranger: generateKeyPair(), commands: 0 };
}

/** An update for this device with a fresh id and a strictly newer issued time. */
export function nextCommand(ctx: ProcessContext, manifest: unknown, device = DEVICE_ID): Command {
  ctx.commands++;
  return { type: "update", id: `fuzz-${ctx.commands}`, device, issued: new Date(Date.now() + ctx.commands).toISOString(), manifest: manifest as SignedManifest };
}

export function send(ctx: ProcessContext, payload: Buffer | string): void {
  if (!ctx.device.broker.sendCommand(Buffer.isBuffer(payload) ? payload : Buffer.from(payload))) throw new Error("no live broker connection to send a command on");
}

export const isEvent = (name: string) => (e: LogEvent) => e.event === name;

/** What the agent said about the command sent after `mark`: its refusal, or the report of the command `id`. */
export async function commandOutcome(ctx: ProcessContext, mark: number, id: string | null): Promise<string> {
  const { device } = ctx;
  return device.waitFor(() => {
    const rejected = device.since(mark, isEvent("agent.command.rejected"))[0];
    if (rejected) {
      const code = String(rejected.code ?? "E_COMMAND_REJECTED");
      // Refusals of the command's bytes share one code; the message says which check.
      return code === "E_COMMAND_REJECTED" ? `agent:command:${code}:${commandRefusalKind(String(rejected.reason))}` : `agent:command:${code}`;
    }
    const mqtt = device.since(mark, isEvent("agent.mqtt.error"))[0];
    if (mqtt) return `agent:mqtt:${mqttCode(mqtt)}`;
    const manifest = device.since(mark, isEvent("agent.manifest.rejected")).find((e) => e.command === id);
    if (manifest) return `agent:manifest:${manifestCode(String(manifest.reason))}`;
    const report = device.broker.reports.find((r) => r.command === id && r.state === "failed");
    if (report) return `agent:taken-then-failed:${downloadCode(report.error ?? "")}`;
    return null;
  }, 8000, `the agent to refuse or answer command ${id}`);
}

export function mqttCode(event: LogEvent): string {
  const err = event.err as { code?: string; message?: string } | undefined;
  if (err?.code) return err.code;
  return /refused the connection/.test(err?.message ?? "") ? "connack-refused" : /CONNACK within/.test(err?.message ?? "") ? "connack-timeout" : "socket";
}

export function manifestCode(message: string): string {
  const codes: Array<[RegExp, string]> = [
    [/by (pinned|trusted) key .* does not verify/, "E_MANIFEST_BAD_SIGNATURE"], [/only by unknown key/, "E_MANIFEST_UNKNOWN_KEY"], [/expired at/, "E_MANIFEST_EXPIRED"],
    [/for architecture/, "E_MANIFEST_WRONG_ARCH"], [/this device follows/, "E_MANIFEST_WRONG_REF"], [/older than the (booted|highest)/, "E_MANIFEST_ROLLBACK"], [/malformed manifest/, "E_MANIFEST_MALFORMED"],
    [/which the root revoked/, "E_KEY_REVOKED"], [/which holds the \w+ role/, "E_KEY_WRONG_ROLE"], [/is a signed downgrade/, "E_MANIFEST_DOWNGRADE"],
  ];
  return codes.find(([pattern]) => pattern.test(message))?.[1] ?? `other(${message.slice(0, 80)})`;
}

export function downloadCode(message: string): string {
  const codes: Array<[RegExp, string]> = [
    [/the sha256 is/, "E_DELTA_FILE_MISMATCH"], [/the size is/, "E_DELTA_FILE_MISMATCH"], [/goes on past|Content-Length \d+ from byte \d+ is more than/, "E_DOWNLOAD_TOO_LARGE"],
    [/no progress for/, "E_DOWNLOAD_STALLED"], [/asked for bytes=/, "E_DOWNLOAD_BAD_RANGE"], [/: HTTP \d+/, "E_DOWNLOAD_HTTP"], [/GET http/, "E_DOWNLOAD_NETWORK"],
  ];
  return codes.find(([pattern]) => pattern.test(message))?.[1] ?? `other(${message.slice(0, 120)})`;
}
