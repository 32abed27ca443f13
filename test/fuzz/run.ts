/**
 * `npm run fuzz [-- server|agent|codec ...] [--minutes N] [--seed S]`: the hostile-input
 * campaigns of issue 18 for as long as asked (default 5 minutes each), printed with cases tried,
 * refusals by reason, peak RSS and failures with the seed that replays them. CI runs a small
 * seeded slice of each as part of `npm test` (test/integration/server/fuzz-server.test.ts,
 * test/integration/agent/fuzz-agent.test.ts, test/unit/mqtt/codec-differential.test.ts).
 *   server  a real `serve` process under random and mutated MQTT, reports, wills, hellos, HTTP
 *   agent   commands, manifests, deltas and a hostile mirror and broker against the real agent
 *   codec   the device's MQTT decoder against mqtt-packet on random and mutated streams
 */
import { execa } from "execa";
import { parseArgs } from "node:util";
import { renderReport, type FuzzReport, type FuzzRunOptions } from "./report.ts";
import { fuzzServer } from "./server-fuzz.ts";

const SUITES = ["server", "agent", "codec"] as const;
type Suite = (typeof SUITES)[number];

const RUNNERS: Record<Suite, (options: FuzzRunOptions) => Promise<FuzzReport>> = {
  server: fuzzServer,
  agent: async (options) => (await import("./agent-fuzz.ts")).fuzzAgent(options),
  codec: fuzzCodec,
};

/** The differential codec test, run again with new seeds until the deadline. */
async function fuzzCodec(options: FuzzRunOptions): Promise<FuzzReport> {
  const started = Date.now();
  const report: FuzzReport = { suite: "codec", seed: options.seed, cases: 0, seconds: 0, refusals: {}, peakRssBytes: 0, failures: [] };
  const iterations = 20_000;
  for (let seed = options.seed; options.deadline === undefined || Date.now() < options.deadline; seed++) {
    const run = await execa("npx", ["vitest", "run", "test/unit/mqtt/codec-differential.test.ts"], {
      env: { APT_OSTREE_FUZZ_SEED: String(seed), APT_OSTREE_FUZZ_ITERATIONS: String(iterations) },
      reject: false,
      all: true,
    });
    report.cases += iterations;
    if (run.exitCode !== 0) report.failures.push({ seed, case: report.cases, what: "mqtt-packet and the device codec disagree", input: run.all?.slice(-3000) ?? "" });
    options.log?.(`codec fuzz: seed ${seed}, ${report.cases} streams, ${report.failures.length} failures`);
    if (options.cases !== undefined && report.cases >= options.cases) break;
  }
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: { minutes: { type: "string", default: "5" }, seed: { type: "string" }, help: { type: "boolean", short: "h" } },
});
if (values.help) {
  process.stdout.write("usage: npm run fuzz -- [server|agent|codec ...] [--minutes N] [--seed S]\n  Runs each campaign for N minutes (default 5); exit status 1 when any case failed.\n");
  process.exit(0);
}
const unknown = positionals.filter((p) => !SUITES.includes(p as Suite));
if (unknown.length > 0 || !/^\d+(\.\d+)?$/.test(values.minutes!) || (values.seed !== undefined && !/^\d+$/.test(values.seed))) {
  process.stderr.write(`error: ${unknown.length > 0 ? `unknown campaign ${unknown.join(", ")} (known: ${SUITES.join(", ")})` : "--minutes takes a number and --seed an integer"}\n`);
  process.exit(2);
}
const suites = positionals.length > 0 ? (positionals as Suite[]) : [...SUITES];
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 2 ** 31;
let failed = false;
for (const suite of suites) {
  const deadline = Date.now() + Number(values.minutes) * 60_000;
  process.stderr.write(`${suite}: fuzzing for ${values.minutes} min with seed ${seed}\n`);
  const report = await RUNNERS[suite]({ seed, deadline, log: (line) => process.stderr.write(`${line}\n`) });
  process.stdout.write(`${renderReport(report)}\n`);
  failed ||= report.failures.length > 0;
}
process.exit(failed ? 1 : 0);
