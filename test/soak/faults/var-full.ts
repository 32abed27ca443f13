/**
 * /var fills up in the middle of a download (v4, 48 MiB, over a link slowed to 512 KiB/s per
 * connection): the device reports why it waits, keeps nothing of the download, its agent does not
 * restart and the running system goes on; once the space is back the update goes on by itself and
 * ends healthy.
 */
import { sleep } from "../checks.ts";
import type { FaultScenario } from "./scenario.ts";
import { between } from "./scenario.ts";
import { bootV1, inVm, waitForReport, waitHealthyOn } from "./steps.ts";
import { checkInside } from "../checks.ts";

// Every free block, the reserved ones too (the agent runs as root): files of halving sizes until
// not even 64 KiB fits. No `set -e`: the test console's shell must live on.
const FILL = `( i=0; s=$(( $(stat -f -c '%f * %S' /var) )); while [ $s -gt 65536 ]; do if fallocate -l $s /var/fill.$i 2>/dev/null; then i=$((i+1)); else s=$((s / 2)); fi; done; sync; stat -f -c '%f' /var )`;
const UNFILL = "rm -f /var/fill.* && sync";

export const varFull: FaultScenario = {
  name: "var-full",
  what: "/var filled to the last block in the middle of a 48 MiB download, freed again 1-3 minutes later",
  expected: "a report of why it waits, nothing left of the download, no agent restart, v1 unharmed; healthy on v4 once there is room",
  release: "v4",
  rig: () => ({ throttleBytesPerSecond: 512 * 1024 }),
  async run({ rig, fixture, prng, slow, note, fail }) {
    const release = fixture.releases.v4!;
    await bootV1(rig, slow);
    const command = await rig.rollOut(release);
    const started = await waitForReport(rig, command, "4 MiB downloaded", (r) => ((r.progress as { bytes: number } | undefined)?.bytes ?? 0) > 4 * 1048576, 10 * 60_000 * slow);
    const freeBlocks = await inVm(rig, FILL, slow);
    note(`filled /var at ${Math.round(((started.progress as { bytes: number }).bytes) / 1048576)} MiB downloaded (${freeBlocks} blocks left)`);
    const waiting = await waitForReport(rig, command, "a report of why the update waits", (r) => /space/i.test(String(r.error ?? "")), 5 * 60_000 * slow).catch((error: Error) => (fail(error.message), null));
    if (waiting) note(`reported: ${waiting.state}: ${String(waiting.error).slice(0, 200)}`);
    const fullFor = between(prng, 60_000, 180_000);
    await sleep(fullFor);
    const restarts = await inVm(rig, "systemctl show -p NRestarts --value apt-ostreed; systemctl is-active apt-ostreed", slow);
    if (restarts !== "0\nactive") fail(`the agent restarted or stopped on the full disk: NRestarts/active = ${restarts.replace("\n", "/")}`);
    const kept = await inVm(rig, "find /var/lib/apt-ostree/downloads -type f 2>/dev/null | wc -l", slow);
    if (kept !== "0") fail(`${kept} downloaded file(s) kept on the full disk`);
    const status = await inVm(rig, "ostree admin status", slow);
    if (!status.includes(fixture.releases.v1.commit) || /\(staged\)/.test(status)) fail(`the running system changed on the full disk:\n${status}`);
    const state = JSON.parse(await inVm(rig, "cat /var/lib/apt-ostree/state.json", slow)).state;
    note(`after ${Math.round(fullFor / 1000)} s full: agent ${state.name}, attempt ${state.attempt}, waiting ${JSON.stringify(state.waiting ?? null).slice(0, 160)}`);
    if (state.name !== "downloading" || state.attempt !== 1) fail(`the agent is ${state.name} (attempt ${state.attempt}) on the full disk, not waiting in its first attempt`);
    await inVm(rig, UNFILL, slow);
    const freed = Date.now();
    await waitHealthyOn(rig, release, 30 * 60_000 * slow).catch((error: Error) => fail(error.message));
    note(`healthy on v4 ${Math.round((Date.now() - freed) / 1000)} s after the space came back`);
    const { device } = await rig.device();
    if (rig.vm?.running) for (const failure of await checkInside(rig.console(), device, release.commit, "healthy-v2", false, slow)) fail(failure);
  },
};
