/**
 * A fault scenario (issue 20, "Other faults"): from the same fixture as the power-cut trials, roll
 * out a release to the VM device, do one fault to it or around it (kill the server, fill /var,
 * take the network away, set its clock wrong) at a seeded instant, and check the outcome the
 * scenario promises, from the server and from inside the VM. A failed scenario keeps its folder.
 */
import { join } from "node:path";
import type { RigOptions } from "../rig.ts";
import { Prng } from "../../fuzz/prng.ts";
import { SoakRig } from "../rig.ts";
import type { PowerCutFixture } from "../power-cut/fixture.ts";

export interface ScenarioRun {
  rig: SoakRig;
  fixture: PowerCutFixture;
  prng: Prng;
  /** Time scale: 1 on amd64, 3 on arm64 (TCG is slower). */
  slow: number;
  say: (line: string) => void;
  /** What the scenario saw on the way, for the summary. */
  note: (line: string) => void;
  /** A broken promise: the scenario goes on (later checks still tell), but fails. */
  fail: (line: string) => void;
}

export interface FaultScenario {
  name: string;
  what: string;
  /** What must happen, as docs/agent.md or the issue says it. */
  expected: string;
  release: "v2" | "v3" | "v4";
  /** How the rig is set up for this scenario (a clock off by a day, a throttled link). */
  rig?: (prng: Prng) => RigOptions;
  run: (run: ScenarioRun) => Promise<void>;
}

export interface ScenarioResult {
  name: string;
  seed: number;
  passed: boolean;
  seconds: number;
  notes: string[];
  failures: string[];
  artifacts: string | null;
}

export async function runScenario(fixture: PowerCutFixture, scenario: FaultScenario, seed: number, index: number, progress?: (line: string) => void): Promise<ScenarioResult> {
  const say = (line: string) => progress?.(`${scenario.name}: ${line}`);
  const prng = new Prng(seed);
  const release = fixture.releases[scenario.release as keyof PowerCutFixture["releases"]];
  if (!release) throw new Error(`the fixture has no release ${scenario.release}: prepare it again (without --reuse-fixture)`);
  const dir = join(fixture.dir, "faults", `${String(index).padStart(3, "0")}-${scenario.name}`);
  const started = Date.now();
  const result: ScenarioResult = { name: scenario.name, seed, passed: false, seconds: 0, notes: [], failures: [], artifacts: null };
  const rig = await SoakRig.open(fixture, dir, release, scenario.rig?.(prng) ?? {});
  try {
    await scenario.run({
      rig, fixture, prng, slow: fixture.arch === "arm64" ? 3 : 1, say,
      note: (line) => {
        result.notes.push(line);
        say(line);
      },
      fail: (line) => {
        result.failures.push(line);
        say(`FAILED: ${line}`);
      },
    });
  } catch (error) {
    result.failures.push((error as Error).message);
  }
  result.passed = result.failures.length === 0;
  result.seconds = Math.round((Date.now() - started) / 1000);
  await rig.close(!result.passed);
  if (!result.passed) result.artifacts = dir;
  return result;
}

export function describeScenario(result: ScenarioResult): string {
  return `${result.passed ? "PASS" : "FAIL"} ${result.name} seed=${result.seed} (${result.seconds} s)${result.notes.map((n) => `\n    ${n}`).join("")}${result.failures.map((f) => `\n    FAILED: ${f}`).join("")}${result.artifacts ? `\n    kept: ${result.artifacts}` : ""}`;
}

/** A seeded whole number in [min, max). */
export function between(prng: Prng, min: number, max: number): number {
  return Math.floor(min + prng.next() * (max - min));
}
