/**
 * Cases against the real agent process (device.ts): mutated commands through the broker,
 * commands carrying refused manifests, mutated channel manifests through the control socket's
 * `upgrade --check`, a delta file the mirror spoils (mutated, endless, oversized, stalled, reset,
 * an error status, a resume at the wrong offset), and a broker that sends garbage on a live
 * connection or in place of its CONNACK. Each case returns the refusal it saw, named by the
 * agent's error code, or throws when the agent did something else; after each, `checkDevice`
 * holds the device to what it was before.
 */
import type { Prng } from "../prng.ts";
import { brokerGarbage, garbageBeforeConnack } from "./broker-cases.ts";
import { mutatedCommand, refusedManifest, spoiledChannel } from "./command-cases.ts";
import { cancelInBackoff, spoiledDeltaFile, wrongRangeResume } from "./delta-cases.ts";
import type { ProcessContext } from "./process-context.ts";

export { processContext, type ProcessContext } from "./process-context.ts";

/** Process cases kept from bugs they found, run once at the start of every campaign. */
export const KEPT_PROCESS_CASES: ReadonlyArray<[string, (prng: Prng, ctx: ProcessContext) => Promise<string>]> = [["cancel-in-backoff", cancelInBackoff]];

export const PROCESS_CASES: ReadonlyArray<[string, (prng: Prng, ctx: ProcessContext) => Promise<string>]> = [
  ["mutated-command", mutatedCommand],
  ["spoiled-delta-file", spoiledDeltaFile],
  ["refused-manifest", refusedManifest],
  ["broker-garbage", brokerGarbage],
  ["spoiled-channel", spoiledChannel],
  ["spoiled-delta-file", spoiledDeltaFile],
  ["garbage-before-connack", garbageBeforeConnack],
  ["wrong-range-resume", wrongRangeResume],
];
