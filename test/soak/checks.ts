/**
 * What a soak run checks once the power came back or a fault passed: `settle` waits for the
 * device to end in an outcome; `checkInside` asks the VM over the test console whether ostree,
 * the agent and the server agree and nothing is left half-done; `checkStory` reads the server's
 * reports for the command.
 */
import type { TestConsole } from "../../qemu/test-console.ts";
import type { Vm } from "../../qemu/vm.ts";
import type { PowerCutFixture } from "./power-cut/fixture.ts";
import type { Outcome } from "./power-cut/phases.ts";

export type SettledOutcome = Outcome | "boot-loop" | "stuck" | "vm-stopped";

/** Kernel starts on a serial log. */
export const KERNEL = /Linux version \d/g;

export function count(text: string, pattern: RegExp): number {
  return (text.match(new RegExp(pattern.source, "g")) ?? []).length;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface Settled {
  outcome: SettledOutcome;
  boots: number;
  device: any;
}

/** Waits for the device to end in an outcome, or for the boots or the time to run out. */
export async function settle(options: {
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
export async function checkInside(console: TestConsole, device: any, target: string, outcome: SettledOutcome, fsck: boolean, slow: number): Promise<string[]> {
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
export function checkStory(reports: any[], outcome: SettledOutcome, target: string, v1: string): string[] {
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
