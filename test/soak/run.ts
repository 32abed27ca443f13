/**
 * `npm run soak -- power-cut [--trials N] [--arch amd64|arm64] [--seed S] [--phase P[,P...]]
 * [--fsck] [--strict] [--reuse-fixture]`: the power-cut campaign of issue 20 in real VMs. Trials cycle through
 * the chosen phases; trial i uses seed S+i, so a failing trial replays with `--seed` and `--phase`.
 * Prints a line per trial and a table per phase, writes the results as JSON beside the fixture,
 * and exits 1 if any trial failed (its serial logs, disk and server log are kept).
 *
 * `npm run soak -- faults [--scenario S[,S...]] [--arch] [--seed S] [--reuse-fixture]`: the other
 * faults of issue 20 (test/soak/faults/), on the same fixture, one run per scenario.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createLogger } from "../../shared/log.ts";
import { defaultCacheDir } from "../../server/compose/cache.ts";
import { preparePowerCutFixture, type PowerCutFixture } from "./power-cut/fixture.ts";
import { PHASE_NAMES, phases, type PhaseName } from "./power-cut/phases.ts";
import { summarize } from "./power-cut/summary.ts";
import { describeTrial, runTrial, type TrialResult } from "./power-cut/trial.ts";
import { SCENARIOS } from "./faults/index.ts";
import { describeScenario, runScenario, type ScenarioResult } from "./faults/scenario.ts";

const USAGE = `Usage: npm run soak -- power-cut [options]
       npm run soak -- faults [--scenario S[,S]] [--arch ARCH] [--seed S] [--reuse-fixture]

Cuts the power of a qemu device at a random instant of an update phase, powers it on again and
checks that it ends healthy on the new release, still on the old one, or rolled back, within 6 boots.

Options:
  --trials N        trials to run (default: one per chosen phase)
  --arch ARCH       amd64 (default) or arm64
  --seed S          first trial's seed (default: from the clock); trial i uses S+i
  --phase P[,P]     phases to cut in (default all): ${PHASE_NAMES.join(", ")}
  --fsck            also run ostree fsck inside the VM after each trial (minutes each under TCG)
  --strict          a disk with a volatile write cache: the cut also loses every write after the
                    guest's last flush (qemu's blklogwrites log, replayed up to that flush)
  --reuse-fixture   reuse the composed releases and enrolled disk of the last run, if any
  -h, --help        this text

faults runs each scenario once: ${SCENARIOS.map((s) => s.name).join(", ")}.
`;

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    trials: { type: "string" },
    arch: { type: "string", default: "amd64" },
    seed: { type: "string" },
    phase: { type: "string" },
    scenario: { type: "string" },
    fsck: { type: "boolean", default: false },
    strict: { type: "boolean", default: false },
    "reuse-fixture": { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
});
const command = positionals[0];
if (values.help || (command !== "power-cut" && command !== "faults")) {
  process.stdout.write(USAGE);
  process.exit(values.help ? 0 : 2);
}
const arch = values.arch;
if (arch !== "amd64" && arch !== "arm64") throw new Error(`--arch must be amd64 or arm64, not '${arch}'`);
const chosen = (values.phase?.split(",").filter(Boolean) ?? PHASE_NAMES) as PhaseName[];
for (const name of chosen) if (!PHASE_NAMES.includes(name)) throw new Error(`--phase: '${name}' is not one of ${PHASE_NAMES.join(", ")}`);
const trials = values.trials === undefined ? chosen.length : Number(values.trials);
if (!Number.isInteger(trials) || trials < 1) throw new Error(`--trials must be a positive whole number, not '${values.trials}'`);
const seed = values.seed === undefined ? Date.now() % 1_000_000 : Number(values.seed);
if (!Number.isInteger(seed)) throw new Error(`--seed must be a whole number, not '${values.seed}'`);

const log = createLogger({ name: "soak", level: process.env.APT_OSTREE_LOG_LEVEL ?? "warn" });
const say = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
const cache = defaultCacheDir();
const dir = join(cache, arch === "amd64" ? "soak-power-cut" : `soak-power-cut-${arch}`);
const fixtureFile = join(dir, "fixture.json");

let fixture: PowerCutFixture | null = null;
if (values["reuse-fixture"]) fixture = await readFile(fixtureFile, "utf8").then((text) => JSON.parse(text) as PowerCutFixture, () => null);
if (!fixture) {
  say(`preparing the fixture in ${dir}`);
  fixture = await preparePowerCutFixture({ dir, arch, cacheDir: cache, log, progress: say, bigRelease: true });
  await writeFile(fixtureFile, `${JSON.stringify(fixture, null, 2)}\n`);
}
if (command === "faults") process.exit(await runFaults(fixture));
const byName = new Map(phases(fixture.bootTries).map((p) => [p.name, p]));
say(`${trials} trial(s), seed ${seed}, phases ${chosen.join(", ")}`);
const results: TrialResult[] = [];
for (let i = 0; i < trials; i++) {
  const phase = byName.get(chosen[i % chosen.length]!)!;
  const result = await runTrial({ fixture, index: i, phase, seed: seed + i, fsck: values.fsck, strict: values.strict, progress: say });
  results.push(result);
  say(describeTrial(result));
  // After every trial: a batch stopped part-way keeps the record of the trials it ran.
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, `results-${seed}${values.strict ? "-strict" : ""}.json`), `${JSON.stringify(results, null, 2)}\n`);
}
process.stdout.write(`\n${summarize(results)}\n\n`);
const failed = results.filter((r) => !r.passed);
say(failed.length === 0 ? `all ${results.length} trial(s) passed` : `${failed.length} of ${results.length} trial(s) failed`);
process.exit(failed.length === 0 ? 0 : 1);

async function runFaults(fixture: PowerCutFixture): Promise<number> {
  const names = values.scenario?.split(",").filter(Boolean) ?? SCENARIOS.map((s) => s.name);
  const chosen = names.map((name) => SCENARIOS.find((s) => s.name === name) ?? (() => { throw new Error(`--scenario: '${name}' is not one of ${SCENARIOS.map((s) => s.name).join(", ")}`); })());
  say(`${chosen.length} fault scenario(s), seed ${seed}`);
  const results: ScenarioResult[] = [];
  for (const [i, scenario] of chosen.entries()) {
    say(`${scenario.name}: ${scenario.what}; expected: ${scenario.expected}`);
    const result = await runScenario(fixture, scenario, seed + i, i, say);
    results.push(result);
    say(describeScenario(result));
  }
  await writeFile(join(dir, `faults-${seed}.json`), `${JSON.stringify(results, null, 2)}\n`);
  const failed = results.filter((r) => !r.passed);
  say(failed.length === 0 ? `all ${results.length} scenario(s) passed` : `${failed.length} of ${results.length} scenario(s) failed`);
  return failed.length === 0 ? 0 : 1;
}
