/**
 * CI's seeded slice of the power-cut campaign (`npm run soak -- power-cut`, test/soak/run.ts):
 * one trial in each of three of the riskiest phases, with a fixed seed so a failure replays with
 * `npm run soak -- power-cut --seed 2026 --phase P`. Each trial cuts the power of a real qemu
 * device (SIGKILL, disk opened O_DIRECT) during an update and requires it to end healthy, on the
 * old release, or rolled back, within 6 boots, with ostree, the agent and the server agreeing.
 * Then one of the other faults on the same fixture: the VM's clock a day behind the server's
 * (`npm run soak -- faults --scenario clock-behind`), which exercises TLS and the agent's tokens.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../shared/log.ts";
import { defaultCacheDir } from "../../server/compose/cache.ts";
import { preparePowerCutFixture, type PowerCutFixture } from "../soak/power-cut/fixture.ts";
import { phases, type PhaseName } from "../soak/power-cut/phases.ts";
import { summarize } from "../soak/power-cut/summary.ts";
import { describeTrial, runTrial, type TrialResult } from "../soak/power-cut/trial.ts";
import { clockBehind } from "../soak/faults/clock-skew.ts";
import { describeScenario, runScenario } from "../soak/faults/scenario.ts";

const ARCH = process.env.APT_OSTREE_E2E_ARCH ?? "amd64";
if (ARCH !== "amd64" && ARCH !== "arm64") throw new Error(`APT_OSTREE_E2E_ARCH must be amd64 or arm64, not '${ARCH}'`);
const MINUTE = 60_000 * (ARCH === "arm64" ? 3 : 1);
const SEED = 2026;
// The finalize regression (a boot loop before /boot lost its journal), a first boot cut short, and a
// bad release whose grubenv is lost on its first try (GRUB counts on in the copy, then the rollback).
const CI_PHASES: PhaseName[] = ["finalize-done", "early-boot", "grubenv-copy"];
const log = createLogger({ name: "power-cut", level: process.env.APT_OSTREE_LOG_LEVEL ?? "warn" });
const say = (line: string) => process.stdout.write(`power-cut: ${line}\n`);

let fixture: PowerCutFixture;
const results: TrialResult[] = [];

beforeAll(async () => {
  const cache = defaultCacheDir();
  fixture = await preparePowerCutFixture({ dir: join(cache, ARCH === "amd64" ? "e2e-power-cut" : `e2e-power-cut-${ARCH}`), arch: ARCH, cacheDir: cache, log, progress: say });
}, 40 * MINUTE);

afterAll(() => {
  if (results.length > 0) say(`\n${summarize(results)}`);
});

describe("power cuts during an update, in a real VM", () => {
  for (const [i, name] of CI_PHASES.entries()) {
    it(`recovers from a power cut during ${name}`, async () => {
      const phase = phases(fixture.bootTries).find((p) => p.name === name)!;
      const result = await runTrial({ fixture, index: i, phase, seed: SEED + i, progress: say });
      results.push(result);
      say(describeTrial(result));
      expect(result.failures, describeTrial(result)).toEqual([]);
      expect(phase.expected).toContain(result.outcome);
    }, 40 * MINUTE);
  }
});

describe("a device clock a day behind, in a real VM", () => {
  it("accepts the server's TLS, learns the server's time, comes online and updates", async () => {
    const result = await runScenario(fixture, clockBehind, SEED, CI_PHASES.length, say);
    say(describeScenario(result));
    expect(result.failures, describeScenario(result)).toEqual([]);
  }, 40 * MINUTE);
});
