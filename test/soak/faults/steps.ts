/** Steps the fault scenarios share: boot v1, watch the update's reports and progress, ask the VM. */
import { readFile } from "node:fs/promises";
import type { Release } from "../power-cut/fixture.ts";
import { until } from "../../helpers/wait.ts";
import { SoakRig, type DeviceReport } from "../rig.ts";

/** Powers the VM on and waits for v1 to be blessed and the device online on the server. */
export async function bootV1(rig: SoakRig, slow: number): Promise<void> {
  const vm = await rig.powerOn();
  await vm.waitForSerial(/Boot healthy: no update on trial/, 10 * 60_000 * slow);
  await until(async () => (await rig.device()).device.online, "the device online on the server", 5 * 60_000 * slow, { intervalMs: 2000 });
}

/** The newest report for `command` that matches, waiting up to `ms`. */
export async function waitForReport(rig: SoakRig, command: string, what: string, match: (report: DeviceReport) => boolean, ms: number): Promise<DeviceReport> {
  return until(async () => SoakRig.reports((await rig.device()).events, command).find(match), what, ms, { intervalMs: 1000 });
}

/** Waits until the device reports it is healthy on `release`'s commit, booted. */
export async function waitHealthyOn(rig: SoakRig, release: Release, ms: number): Promise<void> {
  await until(async () => {
    const { device } = await rig.device();
    return device.online && device.state === "healthy" && device.booted?.commit === release.commit;
  }, `the device healthy on v${release.version}`, ms, { intervalMs: 3000, detail: async () => JSON.stringify((await rig.device()).device).slice(0, 600) });
}

/** The size of the delta from `from` in a kept signed manifest. */
export async function deltaSize(release: Release, from: string): Promise<number> {
  const { manifest } = JSON.parse(await readFile(release.manifestFile, "utf8"));
  const delta = manifest.deltas.find((d: { from: string }) => d.from === from);
  if (!delta) throw new Error(`v${release.version}'s manifest has no delta from ${from.slice(0, 12)}`);
  return delta.size as number;
}

/** Runs a shell command in the VM and returns its output; a non-zero exit throws. */
export async function inVm(rig: SoakRig, command: string, slow: number, ms = 120_000): Promise<string> {
  const result = await rig.console().run(command, ms * slow);
  if (result.exitCode !== 0) throw new Error(`in the VM, '${command}' exited ${result.exitCode}: ${result.output.slice(-400)}`);
  return result.output.trim();
}
