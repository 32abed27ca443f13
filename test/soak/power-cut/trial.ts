/**
 * One power-cut trial (issue 20): from the enrolled v1 disk (a fresh qcow2 overlay) and a copy of
 * the server's data, roll out the phase's release, cut the power (SIGKILL of qemu, disk opened
 * O_DIRECT) at the phase's marker plus the seeded delay, power on again and wait, within a
 * bounded number of boots, for one of the outcomes the phase allows. Then check from the server
 * (one consistent story per command) and from inside the VM through the test console (ostree
 * agrees with the server, the agent's state file parses, nothing staged half-way, fsck passes).
 */
import { join } from "node:path";
import { Prng } from "../../fuzz/prng.ts";
import { until } from "../../helpers/wait.ts";
import { KERNEL, checkInside, checkStory, count, settle, sleep, type SettledOutcome } from "../checks.ts";
import { SoakRig } from "../rig.ts";
import type { PowerCutFixture } from "./fixture.ts";
import type { ReplayStats } from "../../../qemu/write-log.ts";
import type { Outcome, Phase, PhaseName } from "./phases.ts";

export interface TrialResult {
  index: number;
  phase: PhaseName;
  seed: number;
  delayMs: number;
  /** The last state the device reported for the command before the cut. */
  cutAfter: string;
  /** States the device reported for the command after the power came back, oldest first. */
  reportedAfterCut: string[];
  outcome: SettledOutcome;
  passed: boolean;
  /** Kernel starts after the power came back. */
  bootsAfterCut: number;
  /** From the power coming back to the outcome. */
  recoverySeconds: number;
  failures: string[];
  /** Where the trial's serial logs and disk were kept (failed trials), or null. */
  artifacts: string | null;
  /** Strict mode: the writes the cut dropped (those no flush covered). */
  replay?: ReplayStats;
}

export interface TrialOptions {
  fixture: PowerCutFixture;
  index: number;
  phase: Phase;
  seed: number;
  /** Boots allowed after the cut before the trial counts as a boot loop. */
  maxBoots?: number;
  /** Run `ostree fsck` inside the VM after the outcome (minutes under TCG). */
  fsck?: boolean;
  /** The disk loses what the guest wrote after its last flush (a volatile write cache): SoakRig's strict mode. */
  strict?: boolean;
  progress?: (line: string) => void;
}

export async function runTrial(options: TrialOptions): Promise<TrialResult> {
  const { fixture, phase, index } = options;
  const say = options.progress ?? (() => undefined);
  const slow = fixture.arch === "arm64" ? 3 : 1;
  const prng = new Prng(options.seed);
  const delayMs = Math.round(phase.delayMs[0] + prng.next() * (phase.delayMs[1] - phase.delayMs[0]));
  const release = fixture.releases[phase.release];
  const { v1 } = fixture.releases;
  const dir = join(fixture.dir, "trials", `${String(index).padStart(3, "0")}-${phase.name}`);
  const result: TrialResult = { index, phase: phase.name, seed: options.seed, delayMs, cutAfter: "", reportedAfterCut: [], outcome: "stuck", passed: false, bootsAfterCut: 0, recoverySeconds: 0, failures: [], artifacts: null };
  const rig = await SoakRig.open(fixture, dir, release, { strict: options.strict ?? false });
  try {
    let vm = await rig.powerOn();
    await vm.waitForSerial(/Boot healthy: no update on trial/, 10 * 60_000 * slow);
    const command = await rig.rollOut(release);
    const reports = (events: any[], since = 0) => SoakRig.reports(events, command, since);
    const kernelsAtStart = count(await vm.serial(), KERNEL);
    say(`trial ${index} (${phase.name}): rollout of v${release.version} started; cutting ${delayMs} ms after ${phase.marker.kind === "report" ? `the '${phase.marker.state}' report` : `${phase.marker.pattern} x${phase.marker.count}`}`);
    await until(async () => {
      if (!vm.running) throw new Error("the VM stopped before the cut");
      if (phase.marker.kind === "report") {
        const wanted = phase.marker.state;
        return reports((await rig.device()).events).some((r) => r.state === wanted);
      }
      const serial = await vm.serial();
      const base = phase.marker.pattern.source === KERNEL.source ? kernelsAtStart : 0;
      return count(serial, phase.marker.pattern) >= base + phase.marker.count;
    }, `the ${phase.name} marker`, 30 * 60_000 * slow, { intervalMs: 250, rethrow: true });
    await sleep(delayMs);
    if (phase.fault) {
      const fault = await rig.console().run(phase.fault, 10 * 60_000 * slow);
      if (fault.exitCode !== 0) throw new Error(`the fault '${phase.fault}' failed in the VM: ${fault.output.slice(-300)}`);
    }
    // Strict: at the next moment the disk's cache holds writes no flush covered (within 20 s).
    if (options.strict) await rig.awaitUnflushedWrite(20_000 * slow);
    const replay = await rig.cutPower();
    if (replay) result.replay = replay;
    result.cutAfter = reports((await rig.device()).events)[0]?.state ?? "(none)";
    say(`trial ${index}: power cut after '${result.cutAfter}'${replay ? ` (strict: ${replay.dropped} of ${replay.writes} writes, ${Math.round(replay.droppedBytes / 1024)} KiB, after the last of ${replay.flushes} flushes dropped)` : ""}`);

    const back = Date.now();
    vm = await rig.powerOn();
    const maxBoots = options.maxBoots ?? 6;
    const settled = await settle({ vm, maxBoots, slow, fixture, device: () => rig.device(), reports: (events) => reports(events, back), stableMs: 90_000 });
    result.outcome = settled.outcome;
    result.bootsAfterCut = settled.boots;
    result.recoverySeconds = Math.round((Date.now() - back) / 1000);
    if (!phase.expected.includes(result.outcome as Outcome)) result.failures.push(`ended ${result.outcome}; the ${phase.name} phase allows ${phase.expected.join(" or ")}`);
    if (vm.running) result.failures.push(...(await checkInside(rig.console(), settled.device, release.commit, result.outcome, options.fsck ?? false, slow)));
    const events = (await rig.device()).events;
    result.reportedAfterCut = reports(events, back).map((r) => r.state).reverse();
    result.failures.push(...checkStory(reports(events), result.outcome, release.commit, v1.commit));
  } catch (error) {
    result.failures.push((error as Error).message);
  }
  result.passed = result.failures.length === 0;
  await rig.close(!result.passed);
  if (!result.passed) result.artifacts = dir;
  return result;
}

/** The summary line of a trial, for logs. */
export function describeTrial(result: TrialResult): string {
  return `${result.passed ? "PASS" : "FAIL"} #${result.index} ${result.phase} seed=${result.seed} cut ${result.delayMs} ms after marker (last report '${result.cutAfter}', then ${result.reportedAfterCut.join(" > ") || "none"}): ${result.outcome}, ${result.bootsAfterCut} boot(s), ${result.recoverySeconds} s${result.replay ? `, strict: ${result.replay.dropped} write(s) dropped` : ""}${result.failures.length ? `\n    ${result.failures.join("\n    ")}` : ""}${result.artifacts ? `\n    kept: ${result.artifacts}` : ""}`;
}
