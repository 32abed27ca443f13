/**
 * What once made the agent's checks misbehave, replayed at the start of every campaign: kept
 * inputs (hex, as a failure report prints them) and kept case seeds of the in-process layers
 * (a case seed makes the same input again whatever the campaign's keys). Each must now be refused
 * with the module's typed error. Add a failing input or case seed here with the bug it found.
 */
import { anyOf } from "../../../shared/trust/signers.ts";
import { keyId } from "../../../shared/sign/ed25519.ts";
import { CommandRejectedError, verifyCommand } from "../../../shared/wire/command.ts";
import { ManifestRejectedError, verifySignedManifest } from "../../../shared/verify/manifest.ts";
import { MqttProtocolError, PacketReader } from "../../../device/mqtt/packets.ts";
import { Prng } from "../prng.ts";
import { countRefusal, type FuzzFailure, type FuzzReport } from "../report.ts";
import { commandCase, Finding, manifestCase, mqttCase, type InProcessContext } from "./in-process.ts";

/** Stands for the pinned key's id in a kept input: a signature "by" it reaches the verification. */
export const PINNED_KEYID = "f".repeat(64);

export interface KeptInput {
  /** Where it goes: a command's bytes, a manifest's text parsed as a channel fetch parses it, or a broker's byte stream. */
  layer: "command" | "manifest-object" | "mqtt";
  hex: string;
  /** What it once did. */
  found: string;
}

const hex = (text: string) => Buffer.from(text, "utf8").toString("hex");
const SIG = `${"A".repeat(86)}==`;

export const KEPT_INPUTS: KeptInput[] = [
  {
    layer: "manifest-object",
    hex: hex(`{"manifest":{"schema":1e999},"signatures":[{"keyid":"${PINNED_KEYID}","sig":"${SIG}"}]}`),
    found: "verifySignedManifest threw TypeError (canonical JSON of Infinity) on a manifest that JSON.parse took, as a channel fetch hands it over",
  },
];

export interface KeptCase {
  layer: "command" | "manifest" | "mqtt";
  seed: number;
  found: string;
}

export const KEPT_CASES: KeptCase[] = [
  { layer: "manifest", seed: 1567281004, found: "verifySignedManifest(object) threw TypeError: 1e999 in a manifest a channel fetch parsed" },
  { layer: "manifest", seed: 679547656, found: "verifySignedManifest(object) threw RangeError: nesting 100,000 deep overflowed canonical JSON's recursion" },
  { layer: "manifest", seed: 303545482, found: "verifySignedManifest(object) threw RangeError: nesting 5,000 deep in the manifest's schema field" },
];

function replayInput(input: KeptInput, ctx: InProcessContext): string {
  const bytes = Buffer.from(Buffer.from(input.hex, "hex").toString("latin1").replaceAll(PINNED_KEYID, keyId(ctx.pinned.publicKey)), "latin1");
  try {
    switch (input.layer) {
      case "command":
        verifyCommand(bytes, anyOf([ctx.pinned.publicKey]));
        return "regression:command-accepted";
      case "manifest-object":
        verifySignedManifest(JSON.parse(bytes.toString("utf8")), ctx.expect);
        return "regression:manifest-accepted";
      case "mqtt":
        new PacketReader(64 * 1024 + 1024).push(bytes);
        return "regression:mqtt-decoded";
    }
  } catch (error) {
    if (error instanceof CommandRejectedError || error instanceof ManifestRejectedError || error instanceof MqttProtocolError) return `regression:${(error as { code?: string }).code ?? error.name}`;
    throw error;
  }
}

const LAYERS = { command: commandCase, manifest: manifestCase, mqtt: mqttCase };

/** Runs every kept input and case; returns the ones that misbehave again. */
export async function replayRegressions(ctx: InProcessContext, report: FuzzReport): Promise<FuzzFailure[]> {
  const failures: FuzzFailure[] = [];
  KEPT_INPUTS.forEach((input, i) => {
    try {
      countRefusal(report, replayInput(input, ctx));
    } catch (error) {
      failures.push({ seed: report.seed, case: -1 - i, what: `kept input ${i} (${input.found}) threw ${(error as Error).name}: ${(error as Error).message}`, input: input.hex });
    }
  });
  for (const kept of KEPT_CASES) {
    try {
      countRefusal(report, `regression:${LAYERS[kept.layer](new Prng(kept.seed), ctx)}`);
    } catch (error) {
      failures.push({ seed: kept.seed, case: -1, what: `kept ${kept.layer} case (${kept.found}): ${(error as Error).message}`, input: error instanceof Finding ? error.input : "" });
    }
  }
  return failures;
}
