/**
 * The agent's hostile-input campaign (issue 18, "Prove it"): mutated commands, manifests, delta
 * superblocks and parts, oversized and endless bodies, stalled connections and a broker that
 * sends garbage, each refused with its own error, with nothing changed on disk.
 *
 * Two layers share one seeded sequence of cases. Most cases run in this process against the
 * checks themselves (agent/in-process.ts: verifyCommand, verifySignedManifest, the delta file
 * check, the MQTT packet reader): thousands a second. Every PROCESS_EVERY-th case attacks the
 * real `apt-ostreed` process on a throwaway sysroot through a hostile mirror, a fuzz broker and
 * its control socket (agent/process-cases.ts), and then holds the device to what it was
 * (agent/device-checks.ts). Inputs that once found a bug are replayed first (agent/regressions.ts).
 * `APT_OSTREE_FUZZ_AGENT_PROCESS=0` leaves the process out (the in-process layer alone).
 */
import { makeTempDir, removeTree } from "../helpers/tmp.ts";
import { Prng } from "./prng.ts";
import { countRefusal, type FuzzReport, type FuzzRunOptions } from "./report.ts";
import { FuzzDevice, type Snapshot } from "./agent/device.ts";
import { checkDevice } from "./agent/device-checks.ts";
import { commandCase, deltaFileCase, Finding, inProcessContext, manifestCase, mqttCase, type InProcessContext } from "./agent/in-process.ts";
import { KEPT_PROCESS_CASES, PROCESS_CASES, processContext, type ProcessContext } from "./agent/process-cases.ts";
import { replayRegressions } from "./agent/regressions.ts";

/** One case in this many runs against the agent process. */
export const PROCESS_EVERY = 100;

const IN_PROCESS: ReadonlyArray<[string, (prng: Prng, ctx: InProcessContext) => string | Promise<string>]> = [
  ["command", (prng, ctx) => commandCase(prng, ctx)],
  ["manifest", manifestCase],
  ["delta-file", deltaFileCase],
  ["mqtt", mqttCase],
];

interface Run {
  report: FuzzReport;
  device: FuzzDevice | null;
  process: ProcessContext | null;
  baseline: Snapshot | null;
  baselineRss: number;
  baselineOstreeCalls: number;
  processCases: number;
  log: (line: string) => void;
}

export async function fuzzAgent(options: FuzzRunOptions): Promise<FuzzReport> {
  const started = Date.now();
  const report: FuzzReport = { suite: "agent", seed: options.seed, cases: 0, seconds: 0, refusals: {}, peakRssBytes: 0, failures: [] };
  const limit = options.cases ?? Number.POSITIVE_INFINITY;
  const done = () => report.cases >= limit || (options.deadline !== undefined && Date.now() >= options.deadline);
  const scratch = await makeTempDir("agent-fuzz-scratch");
  const run: Run = { report, device: null, process: null, baseline: null, baselineRss: 0, baselineOstreeCalls: 0, processCases: 0, log: options.log ?? (() => undefined) };
  // A throw that escapes a case (in this process) is a finding too, not the end of the campaign.
  const escaped = (error: unknown) => report.failures.push({ seed: options.seed, case: report.cases, what: `escaped: ${(error as Error)?.stack ?? String(error)}`.slice(0, 2000), input: "" });
  process.on("uncaughtException", escaped);
  process.on("unhandledRejection", escaped);
  try {
    if (limit >= PROCESS_EVERY && process.env.APT_OSTREE_FUZZ_AGENT_PROCESS !== "0") await setUpDevice(run);
    const ctx = inProcessContext(scratch, run.device?.deltaFiles ?? []);
    for (const failure of await replayRegressions(ctx, report)) report.failures.push(failure);
    if (run.device) for (const kept of KEPT_PROCESS_CASES) await processCase(run, options.seed, -1, kept);
    const prng = new Prng(options.seed);
    while (!done()) {
      const caseSeed = prng.int(2 ** 31);
      const index = report.cases;
      if (run.device && index % PROCESS_EVERY === PROCESS_EVERY - 1) await processCase(run, caseSeed, index);
      else {
        const [layer, check] = IN_PROCESS[index % IN_PROCESS.length]!;
        try {
          countRefusal(report, await check(new Prng(caseSeed), ctx));
        } catch (error) {
          report.failures.push({ seed: caseSeed, case: index, what: `${layer}: ${(error as Error).message}`, input: error instanceof Finding ? error.input : (error as Error).stack ?? "" });
        }
      }
      report.cases++;
      report.peakRssBytes = Math.max(report.peakRssBytes, process.memoryUsage().rss);
      if (report.cases % 1000 === 0) run.log(`agent fuzz: ${report.cases} cases (${run.processCases} against the process), ${report.failures.length} failures`);
    }
  } finally {
    process.off("uncaughtException", escaped);
    process.off("unhandledRejection", escaped);
    await run.device?.tearDown().catch((error: Error) => run.log(`agent fuzz: tear-down: ${error.message}`));
    await removeTree(scratch);
    report.seconds = (Date.now() - started) / 1000;
  }
  return report;
}

async function setUpDevice(run: Run): Promise<void> {
  const device = new FuzzDevice();
  run.device = device;
  await device.setUp();
  run.process = processContext(device);
  await rebaseline(run);
  run.log(`agent fuzz: device up, agent ${(run.baselineRss / 1048576).toFixed(0)} MiB resident`);
}

async function rebaseline(run: Run): Promise<void> {
  run.baseline = await run.device!.snapshot();
  run.baselineRss = await run.device!.rssBytes();
  run.baselineOstreeCalls = (await run.device!.ostreeCalls()).length;
}

/** One case against the agent process, then the device checks; a failure re-baselines so the next cases are judged on their own. */
async function processCase(run: Run, caseSeed: number, index: number, kept?: (typeof KEPT_PROCESS_CASES)[number]): Promise<void> {
  const { device, process: ctx, report } = run;
  const [name, attack] = kept ?? PROCESS_CASES[run.processCases++ % PROCESS_CASES.length]!;
  // A case that made the agent drop its broker connection leaves it reconnecting (1 s backoff, more after a failed try).
  await device!.waitFor(() => device!.broker.live(), 30_000, "the agent to be connected to the broker").catch(() => undefined);
  const before = await device!.snapshot();
  const startedAt = Date.now();
  let outcome = "";
  const problems: string[] = [];
  try {
    outcome = await attack(new Prng(caseSeed), ctx!);
    countRefusal(report, outcome);
  } catch (error) {
    problems.push(`${(error as Error).message}${error instanceof Finding && error.input ? ` [input ${error.input.slice(0, 600)}]` : ""}`);
  }
  const mayEndUpdate = /delta|range|backoff/.test(name) || outcome.startsWith("agent:taken");
  const checked = await checkDevice({ device: device!, baseline: run.baseline!, before, mayEndUpdate, baselineRss: run.baselineRss, baselineOstreeCalls: run.baselineOstreeCalls }).catch((error: Error) => ({ problems: [`the checks failed: ${error.message}`], rss: 0 }));
  problems.push(...checked.problems);
  report.peakRssBytes = Math.max(report.peakRssBytes, checked.rss);
  run.log(`agent fuzz: case ${index} ${name} (seed ${caseSeed}): ${outcome || "no outcome"} in ${Date.now() - startedAt} ms, agent ${(checked.rss / 1048576).toFixed(0)} MiB${problems.length ? `; PROBLEMS: ${problems.join(" | ")}` : ""}`);
  if (problems.length === 0) return;
  report.failures.push({ seed: caseSeed, case: index, what: `${name}: ${problems.join("; ")}`, input: `process case ${name}, case seed ${caseSeed}` });
  await recover(run);
}

/**
 * After a failed case, so the next ones are judged on their own: a device whose sysroot changed
 * or whose agent is not idle or failed is made again from scratch; else a dead agent is started
 * again; then what the device is becomes the baseline.
 */
async function recover(run: Run): Promise<void> {
  try {
    const device = run.device!;
    const now = device.alive() ? await device.snapshot() : null;
    const intact = now !== null && now.refs === run.baseline!.refs && now.deployments === run.baseline!.deployments && ["idle", "failed"].includes(now.record?.state.name ?? "");
    if (!intact && device.alive()) {
      run.log("agent fuzz: the device changed; making it again");
      await device.tearDown();
      await setUpDevice(run);
      return;
    }
    if (!device.alive()) await device.startAgent();
    device.mirror.reset("404");
    await rebaseline(run);
  } catch (error) {
    run.log(`agent fuzz: could not recover the device: ${(error as Error).message}`);
  }
}
