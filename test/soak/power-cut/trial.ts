/**
 * One power-cut trial (issue 20): from the enrolled v1 disk (a fresh qcow2 overlay) and a copy of
 * the server's data, roll out the phase's release, cut the power (SIGKILL of qemu, disk opened
 * O_DIRECT) at the phase's marker plus the seeded delay, power on again and wait, within a
 * bounded number of boots, for one of the outcomes the phase allows. Then check from the server
 * (one consistent story per command) and from inside the VM through the test console (ostree
 * agrees with the server, the agent's state file parses, nothing staged half-way, fsck passes).
 */
import { cp, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { TestConsole } from "../../../qemu/test-console.ts";
import { Vm, accelFromEnv } from "../../../qemu/vm.ts";
import { Prng } from "../../fuzz/prng.ts";
import { serveRelease, type PowerCutFixture } from "./fixture.ts";
import type { Outcome, Phase, PhaseName } from "./phases.ts";
import { SoakServer } from "./server.ts";

export interface TrialResult {
  index: number;
  phase: PhaseName;
  seed: number;
  delayMs: number;
  /** The last state the device reported for the command before the cut. */
  cutAfter: string;
  /** States the device reported for the command after the power came back, oldest first. */
  reportedAfterCut: string[];
  outcome: Outcome | "boot-loop" | "stuck" | "vm-stopped";
  passed: boolean;
  /** Kernel starts after the power came back. */
  bootsAfterCut: number;
  /** From the power coming back to the outcome. */
  recoverySeconds: number;
  failures: string[];
  /** Where the trial's serial logs and disk were kept (failed trials), or null. */
  artifacts: string | null;
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
  progress?: (line: string) => void;
}

const KERNEL = /Linux version \d/g;

function count(text: string, pattern: RegExp): number {
  return (text.match(new RegExp(pattern.source, "g")) ?? []).length;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function runTrial(options: TrialOptions): Promise<TrialResult> {
  const { fixture, phase, index } = options;
  const say = options.progress ?? (() => undefined);
  const slow = fixture.arch === "arm64" ? 3 : 1;
  const prng = new Prng(options.seed);
  const delayMs = Math.round(phase.delayMs[0] + prng.next() * (phase.delayMs[1] - phase.delayMs[0]));
  const release = fixture.releases[phase.release];
  const { v1 } = fixture.releases;
  const dir = join(fixture.dir, "trials", `${String(index).padStart(3, "0")}-${phase.name}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await cp(fixture.baseData, join(dir, "data"), { recursive: true });
  const overlay = join(dir, "disk.qcow2");
  await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-b", fixture.baseDisk, "-F", "raw", overlay]);
  await serveRelease(fixture, release);
  const server = await SoakServer.start({ repo: fixture.repo, data: join(dir, "data"), tlsDir: fixture.tlsDir, trust: fixture.trust, httpPort: fixture.httpPort, mqttPort: fixture.mqttPort, enrollmentSecretFile: fixture.enrollmentSecretFile });
  const socket = join(dir, "console.sock");
  let powerOns = 0;
  const powerOn = async () => {
    powerOns++;
    const vm = new Vm({ disk: overlay, diskFormat: "qcow2", diskCache: "none", arch: fixture.arch, serialLog: join(dir, `serial-${powerOns}.log`), accel: accelFromEnv(), testConsoleSocket: socket });
    await vm.start();
    return vm;
  };
  const result: TrialResult = { index, phase: phase.name, seed: options.seed, delayMs, cutAfter: "", reportedAfterCut: [], outcome: "stuck", passed: false, bootsAfterCut: 0, recoverySeconds: 0, failures: [], artifacts: null };
  // The server lists events newest first.
  const device = async () => (await server.api(`devices/${fixture.deviceId}`)) as { device: any; events: any[] };
  let vm: Vm | null = null;
  try {
    vm = await powerOn();
    await vm.waitForSerial(/Boot healthy: no update on trial/, 10 * 60_000 * slow);
    const { rollout } = await server.api("rollouts", { ref: fixture.ref, select: { devices: [fixture.deviceId] }, waves: "100%", waveDelay: "0s", waveTimeout: "2h", maxFailures: "100%" });
    if (rollout.version !== release.version) throw new Error(`the rollout is for version ${rollout.version}, not ${release.version}: the channel's manifest was not switched`);
    const command = rollout.id as string;
    const reports = (events: any[], since = 0) => events.filter((e) => e.kind === "report" && e.report.command === command && Date.parse(e.at) >= since).map((e) => e.report);
    const kernelsAtStart = count(await vm.serial(), KERNEL);
    say(`trial ${index} (${phase.name}): rollout of v${release.version} started; cutting ${delayMs} ms after ${phase.marker.kind === "report" ? `the '${phase.marker.state}' report` : `${phase.marker.pattern} x${phase.marker.count}`}`);
    await until(async () => {
      if (!vm!.running) throw new Error("the VM stopped before the cut");
      if (phase.marker.kind === "report") {
        const wanted = phase.marker.state;
        return reports((await device()).events).some((r) => r.state === wanted);
      }
      const serial = await vm!.serial();
      const base = phase.marker.pattern.source === KERNEL.source ? kernelsAtStart : 0;
      return count(serial, phase.marker.pattern) >= base + phase.marker.count;
    }, `the ${phase.name} marker`, 30 * 60_000 * slow, 250);
    await sleep(delayMs);
    if (phase.fault) {
      const fault = await new TestConsole(socket).run(phase.fault, 10 * 60_000 * slow);
      if (fault.exitCode !== 0) throw new Error(`the fault '${phase.fault}' failed in the VM: ${fault.output.slice(-300)}`);
    }
    await vm.powerCut();
    result.cutAfter = reports((await device()).events)[0]?.state ?? "(none)";
    say(`trial ${index}: power cut after '${result.cutAfter}'`);

    const back = Date.now();
    vm = await powerOn();
    const maxBoots = options.maxBoots ?? 6;
    const settled = await settle({ vm, maxBoots, slow, fixture, device, reports: (events) => reports(events, back), stableMs: 90_000 });
    result.outcome = settled.outcome;
    result.bootsAfterCut = settled.boots;
    result.recoverySeconds = Math.round((Date.now() - back) / 1000);
    if (!phase.expected.includes(result.outcome as Outcome)) result.failures.push(`ended ${result.outcome}; the ${phase.name} phase allows ${phase.expected.join(" or ")}`);
    if (vm.running) result.failures.push(...(await checkInside(new TestConsole(socket), settled.device, release.commit, result.outcome, options.fsck ?? false, slow)));
    const events = (await device()).events;
    result.reportedAfterCut = reports(events, back).map((r) => r.state).reverse();
    result.failures.push(...checkStory(reports(events), result.outcome, release.commit, v1.commit));
  } catch (error) {
    result.failures.push((error as Error).message);
  } finally {
    await vm?.stop();
    await server.stop();
  }
  result.passed = result.failures.length === 0;
  if (result.passed) await rm(dir, { recursive: true, force: true });
  else {
    await writeFile(join(dir, "serve.log"), server.log());
    result.artifacts = dir;
  }
  return result;
}

async function until<T>(probe: () => Promise<T | false | null | undefined>, what: string, ms: number, intervalMs: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

interface Settled {
  outcome: TrialResult["outcome"];
  boots: number;
  device: any;
}

/** Waits for the device to end in an outcome, or for the boots or the time to run out. */
async function settle(options: {
  vm: Vm;
  maxBoots: number;
  slow: number;
  fixture: PowerCutFixture;
  device: () => Promise<{ device: any; events: any[] }>;
  reports: (events: any[]) => any[];
  stableMs: number;
}): Promise<Settled> {
  const { vm, fixture } = options;
  const { v1, v2 } = fixture.releases;
  const deadline = Date.now() + 30 * 60_000 * options.slow;
  let lastChange = Date.now();
  let last = "";
  for (;;) {
    const boots = count(await vm.serial(), KERNEL);
    if (!vm.running) return { outcome: "vm-stopped", boots, device: null };
    if (boots > options.maxBoots) return { outcome: "boot-loop", boots, device: null };
    const { device, events } = await options.device().catch(() => ({ device: null, events: [] as any[] }));
    if (device) {
      const booted = device.booted?.commit;
      // A report for the command since the power came back (an online flag comes before any report).
      const heardSinceCut = options.reports(events).length > 0;
      const snapshot = `${booted}/${device.state}/${options.reports(events).length}`;
      if (snapshot !== last) {
        last = snapshot;
        lastChange = Date.now();
      }
      if (heardSinceCut && device.online) {
        if (booted === v2.commit && device.state === "healthy") return { outcome: "healthy-v2", boots, device };
        if (booted === v1.commit && device.state === "rolled-back") return { outcome: "rolled-back-v3", boots, device };
        const busy = ["downloading", "staged", "rebooting", "verifying"].includes(device.state);
        if (booted === v1.commit && !busy && Date.now() - lastChange > options.stableMs) return { outcome: "on-v1", boots, device };
      }
    }
    if (Date.now() > deadline) return { outcome: "stuck", boots, device };
    await sleep(3000);
  }
}

/** Inside the VM: ostree and the agent agree with the server, and nothing is left half-done. */
async function checkInside(console: TestConsole, device: any, target: string, outcome: TrialResult["outcome"], fsck: boolean, slow: number): Promise<string[]> {
  const failures: string[] = [];
  const status = await console.run("ostree admin status", 120_000 * slow);
  if (status.exitCode !== 0) return [`ostree admin status failed in the VM (${status.exitCode}): ${status.output.slice(-500)}`];
  const booted = /^\* \S+ ([0-9a-f]{64})\.\d+/m.exec(status.output)?.[1];
  if (!booted) failures.push(`ostree admin status shows no booted deployment:\n${status.output}`);
  else if (device?.booted?.commit && booted !== device.booted.commit) failures.push(`the VM booted ${booted.slice(0, 12)} but the server believes ${String(device.booted.commit).slice(0, 12)}`);
  const state = await console.run("cat /var/lib/apt-ostree/state.json", 60_000 * slow);
  if (state.exitCode !== 0) failures.push(`the agent's state file cannot be read: ${state.output.slice(-300)}`);
  else {
    try {
      JSON.parse(state.output);
    } catch (error) {
      failures.push(`the agent's state file does not parse: ${(error as Error).message}: ${state.output.slice(0, 300)}`);
    }
  }
  if (/\(staged\)/.test(status.output) && device?.state !== "staged") failures.push(`a staged deployment is left while the device is ${device?.state}:\n${status.output}`);
  // Every deployment directory belongs to a deployment ostree lists: nothing written half-way.
  const listed = new Set([...status.output.matchAll(/^[* ] \S+ ([0-9a-f]{64}\.\d+)/gm)].map((m) => m[1]));
  const dirs = await console.run("cd /ostree/deploy/*/deploy && ls -d *.[0-9]*", 60_000 * slow);
  for (const name of dirs.output.split("\n").filter((n) => /^[0-9a-f]{64}\.\d+$/.test(n))) {
    if (!listed.has(name)) failures.push(`deployment directory ${name} is not one ostree lists (left half-written?)`);
  }
  // A rolled-back release must be gone, or a later reboot with the counter cleared would boot it.
  if (outcome === "rolled-back-v3" && status.output.includes(target)) failures.push(`the rolled-back ${target.slice(0, 12)} is still deployed:\n${status.output}`);
  // Healthy or rolled back, the boot is blessed: no counter left armed (the bless unit runs after boot-complete.target).
  let counter = "";
  for (let i = 0; i < 20; i++) {
    counter = (await console.run("grub-editenv /boot/grub/grubenv list", 60_000 * slow)).output;
    if (!/^boot_counter=/m.test(counter)) break;
    await sleep(3000);
  }
  if (/^boot_counter=/m.test(counter)) failures.push(`the boot counter is still set after the outcome: ${counter.trim()}`);
  if (fsck) {
    const result = await console.run("ostree fsck --quiet 2>&1 | tail -5", 40 * 60_000 * slow);
    if (result.exitCode !== 0 || /corrupt|error/i.test(result.output)) failures.push(`ostree fsck in the VM: ${result.output.slice(-500)}`);
  }
  return failures;
}

/** The server's story of the command: one outcome, told at least once, never contradicted. */
function checkStory(reports: any[], outcome: TrialResult["outcome"], target: string, v1: string): string[] {
  const failures: string[] = [];
  const terminal = new Set(reports.map((r) => r.state).filter((s) => ["healthy", "rolled-back"].includes(s)));
  if (terminal.size > 1) failures.push(`the server was told both ${[...terminal].join(" and ")} for one command`);
  if (outcome === "healthy-v2" && !terminal.has("healthy")) failures.push("the device is healthy on the new release but never reported it for the command");
  if (outcome === "rolled-back-v3") {
    const rolledBack = reports.find((r) => r.state === "rolled-back");
    if (!rolledBack) failures.push("the device rolled back but never reported it for the command");
    else if (rolledBack.rolledBack?.from?.commit !== target || rolledBack.booted?.commit !== v1) failures.push(`the rolled-back report names ${rolledBack.rolledBack?.from?.commit?.slice(0, 12)} -> ${rolledBack.booted?.commit?.slice(0, 12)}`);
  }
  if (outcome === "on-v1" && terminal.has("healthy")) failures.push("the device is on v1 but the server was told the update was healthy");
  return failures;
}

/** The summary line of a trial, for logs. */
export function describeTrial(result: TrialResult): string {
  return `${result.passed ? "PASS" : "FAIL"} #${result.index} ${result.phase} seed=${result.seed} cut ${result.delayMs} ms after marker (last report '${result.cutAfter}', then ${result.reportedAfterCut.join(" > ") || "none"}): ${result.outcome}, ${result.bootsAfterCut} boot(s), ${result.recoverySeconds} s${result.failures.length ? `\n    ${result.failures.join("\n    ")}` : ""}${result.artifacts ? `\n    kept: ${result.artifacts}` : ""}`;
}
