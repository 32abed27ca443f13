/**
 * serve is killed with -9 in the middle of a rollout while the VM device updates, stays down for a
 * while, and starts again on the same data: the rollout must finish after the restart, with the
 * device healthy on the new release, one command (the rollout's) and the update done once.
 */
import { until } from "../../helpers/wait.ts";
import { checkInside, checkStory, settle, sleep } from "../checks.ts";
import { SoakRig } from "../rig.ts";
import { between, type FaultScenario } from "./scenario.ts";

/** Where serve dies: after the first report in this state, plus a delay. */
const KILL_POINTS = [
  { state: "downloading", delayMs: [0, 5000] },
  { state: "staged", delayMs: [0, 3000] },
  { state: "rebooting", delayMs: [0, 20_000] },
  { state: "verifying", delayMs: [0, 2000] },
] as const;

/** The order an update's reports go in; a report earlier than one already seen means it was redone. */
const ORDER = ["downloading", "staged", "rebooting", "verifying", "healthy"];

export const serverKill: FaultScenario = {
  name: "server-kill",
  what: "serve killed with -9 mid-rollout, down for 10-90 s, started again on the same data",
  expected: "the rollout completes after the restart; the device healthy on v2; one command, the update done once",
  release: "v2",
  async run({ rig, fixture, prng, slow, note, fail }) {
    const release = fixture.releases.v2;
    let vm = await rig.powerOn();
    await vm.waitForSerial(/Boot healthy: no update on trial/, 10 * 60_000 * slow);
    const command = await rig.rollOut(release);
    const point = prng.pick(KILL_POINTS);
    const delayMs = between(prng, point.delayMs[0], point.delayMs[1]);
    const downMs = between(prng, 10_000, 90_000);
    await until(async () => SoakRig.reports((await rig.device()).events, command).some((r) => r.state === point.state), `the '${point.state}' report`, 30 * 60_000 * slow, { intervalMs: 250 });
    await sleep(delayMs);
    const last = SoakRig.reports((await rig.device()).events, command)[0]?.state;
    await rig.killServer();
    note(`serve killed with -9 ${delayMs} ms after '${point.state}' (last report '${last}'), down for ${Math.round(downMs / 1000)} s`);
    await sleep(downMs);
    const back = Date.now();
    await rig.restartServer();
    vm = rig.vm!;
    const settled = await settle({ vm, maxBoots: 6, slow, fixture, device: () => rig.device(), reports: (events) => SoakRig.reports(events, command, back), stableMs: 90_000 });
    note(`after the restart: ${settled.outcome} in ${Math.round((Date.now() - back) / 1000)} s`);
    if (settled.outcome !== "healthy-v2") fail(`ended ${settled.outcome}, not healthy on v2`);
    if (vm.running) for (const failure of await checkInside(rig.console(), settled.device, release.commit, settled.outcome, false, slow)) fail(failure);
    const { device, events } = await rig.device();
    for (const failure of checkStory(SoakRig.reports(events, command), settled.outcome, release.commit, fixture.releases.v1.commit)) fail(failure);
    // One command: every report names the rollout's; the update went forward only (never started again).
    const all = events.filter((e) => e.kind === "report").map((e) => e.report);
    const others = [...new Set(all.map((r) => r.command).filter((c) => c && c !== command))];
    if (others.length > 0) fail(`the device reported for other commands too: ${others.join(", ")}`);
    const states = SoakRig.reports(events, command).map((r) => r.state).reverse();
    note(`reports: ${states.join(" > ")}`);
    let highest = -1;
    for (const state of states) {
      const at = ORDER.indexOf(state);
      if (at >= 0 && at < highest) fail(`the update went back to '${state}' after '${ORDER[highest]}': it was started again`);
      highest = Math.max(highest, at);
    }
    const rollout = await until(async () => {
      const { rollout } = await rig.server.api(`rollouts/${command}`);
      return rollout.progress.state === "completed" ? rollout : null;
    }, "the rollout to complete", 5 * 60_000, { intervalMs: 2000 }).catch((error: Error) => (fail(error.message), null));
    if (rollout) {
      const member = rollout.devices.find((m: any) => m.deviceId === fixture.deviceId);
      if (member?.status !== "healthy") fail(`the rollout lists the device as ${member?.status}, not healthy`);
    }
    if (device.booted?.commit !== release.commit) fail(`the server believes the device booted ${device.booted?.commit?.slice(0, 12)}`);
  },
};
