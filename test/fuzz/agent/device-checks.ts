/**
 * What must hold after every case against the agent process: it is alive and answers on its
 * control socket; its state file parses and holds the state it held before (or, after a delta
 * file was refused, a documented end: `failed`, or `idle` after a cancel); the sysroot's refs,
 * deployments, objects and remotes are the ones it started with; its download dir is back where
 * it was; `ostree` never applied or pulled anything; its memory stays under a bound.
 */
import { isDeepStrictEqual } from "node:util";
import type { FuzzDevice, Snapshot } from "./device.ts";

/** The agent runs from TypeScript here (tsx): ~100-150 MiB resident. A leak or an unbounded buffer shows well past this. */
export const AGENT_RSS_GROWTH_BOUND = 96 * 1024 * 1024;

export interface CheckInput {
  device: FuzzDevice;
  /** The device as it was set up. */
  baseline: Snapshot;
  /** The device before this case. */
  before: Snapshot;
  /** The case may end an update (a delta refused): `failed` or `idle` then, else the state as before. */
  mayEndUpdate: boolean;
  baselineRss: number;
  /** `ostree` calls logged when the baseline was taken. */
  baselineOstreeCalls: number;
}

export async function checkDevice(input: CheckInput): Promise<{ problems: string[]; rss: number }> {
  const { device, baseline, before } = input;
  const problems: string[] = [];
  if (!device.alive()) return { problems: [`the agent process exited (${device.child?.exitCode ?? device.child?.signalCode})`], rss: 0 };
  const answer = await device.ask({ op: "state" }, 10_000).catch((error: Error) => ({ ok: false as const, code: "E_NO_ANSWER", error: error.message }));
  if (!answer.ok) problems.push(`the control socket does not answer: ${answer.error}`);
  // The state is written before its effects run: a failed update's files go right after.
  let now = await device.snapshot();
  for (let waited = 0; waited < 3000 && !isDeepStrictEqual(now.downloads, baseline.downloads); waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    now = await device.snapshot();
  }
  for (const key of ["refs", "deployments", "objects", "repoConfig"] as const) {
    if (now[key] !== baseline[key]) problems.push(`the sysroot's ${key} changed: ${String(baseline[key]).slice(0, 300)} -> ${String(now[key]).slice(0, 300)}`);
  }
  if (!isDeepStrictEqual(now.downloads, baseline.downloads)) problems.push(`the download dir holds ${JSON.stringify(now.downloads).slice(0, 400)} (it held ${JSON.stringify(baseline.downloads)})`);
  if (!now.record) problems.push("the state file does not parse");
  else if (input.mayEndUpdate) {
    if (now.record.state.name !== "failed" && now.record.state.name !== "idle") problems.push(`the agent is ${now.record.state.name} after a refused delta`);
  } else if (!isDeepStrictEqual(now.record.state, before.record?.state)) {
    problems.push(`the agent's state changed: ${JSON.stringify(before.record?.state).slice(0, 200)} -> ${JSON.stringify(now.record.state).slice(0, 200)}`);
  }
  const applied = (await device.ostreeCalls()).slice(input.baselineOstreeCalls).filter((call) => /^(static-delta|pull)\b/.test(call));
  if (applied.length > 0) problems.push(`ostree was run on downloaded content: ${applied.slice(-3).join("; ")}`);
  const rss = await device.rssBytes();
  if (rss > input.baselineRss + AGENT_RSS_GROWTH_BOUND) problems.push(`the agent holds ${(rss / 1048576).toFixed(0)} MiB, ${((rss - input.baselineRss) / 1048576).toFixed(0)} MiB more than at the start`);
  return { problems, rss };
}
