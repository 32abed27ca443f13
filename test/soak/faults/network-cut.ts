/**
 * The network goes away in the middle of a download (v4, 48 MiB, over a link slowed to 512 KiB/s
 * per connection): qemu's `set_link` unplugs the guest's card for the outage (20 minutes, or
 * APT_OSTREE_SOAK_OUTAGE_MINUTES). The zero-progress watchdog fires, the agent waits without
 * spending its attempts and keeps its part files; once the link is back it resumes them with Range
 * requests and ends healthy, the server having sent the delta's bytes about once.
 */
import { sleep } from "../checks.ts";
import { checkInside } from "../checks.ts";
import type { FaultScenario } from "./scenario.ts";
import { bootV1, deltaSize, inVm, waitForReport, waitHealthyOn } from "./steps.ts";

const MIB = 1048576;

export function outageMinutes(env: NodeJS.ProcessEnv = process.env): number {
  const minutes = Number(env.APT_OSTREE_SOAK_OUTAGE_MINUTES ?? 20);
  if (!(minutes > 0)) throw new Error(`APT_OSTREE_SOAK_OUTAGE_MINUTES must be a positive number, not '${env.APT_OSTREE_SOAK_OUTAGE_MINUTES}'`);
  return minutes;
}

export const networkCut: FaultScenario = {
  name: "network-cut",
  what: `the network unplugged half-way through a 48 MiB download for ${outageMinutes()} minutes`,
  expected: "the watchdog fires, the agent waits with its parts kept, resumes them once the link is back, the bytes fetched about once; healthy on v4",
  release: "v4",
  rig: () => ({ throttleBytesPerSecond: 512 * 1024 }),
  async run({ rig, fixture, slow, note, fail }) {
    const release = fixture.releases.v4!;
    const total = await deltaSize(release, fixture.releases.v1.commit);
    await bootV1(rig, slow);
    const command = await rig.rollOut(release);
    const before = await waitForReport(rig, command, "a third of the delta downloaded", (r) => ((r.progress as { bytes: number } | undefined)?.bytes ?? 0) > total / 3, 10 * 60_000 * slow);
    await rig.vm!.setLink(false);
    const cutAt = Date.now();
    const sentAtCut = rig.proxy!.bytesToClients;
    note(`link down at ${Math.round(((before.progress as { bytes: number }).bytes) / MIB)} of ${Math.round(total / MIB)} MiB (the proxy had sent ${Math.round(sentAtCut / MIB)} MiB)`);
    const outageMs = outageMinutes() * 60_000;
    // Half-way through the outage, from inside: still downloading, waiting, the parts kept.
    await sleep(outageMs / 2);
    const state = JSON.parse(await inVm(rig, "cat /var/lib/apt-ostree/state.json", slow)).state;
    const parts = Number(await inVm(rig, "find /var/lib/apt-ostree/downloads -type f -printf '%s\\n' | awk '{s+=$1} END {print s+0}'", slow));
    note(`${Math.round(outageMs / 120_000)} min into the outage: agent ${state.name}, attempt ${state.attempt}, ${state.waiting?.times ?? 0} wait(s) (${String(state.waiting?.error ?? "").slice(0, 120)}); ${Math.round(parts / MIB)} MiB kept`);
    if (state.name !== "downloading" || state.attempt !== 1 || !state.waiting) fail(`during the outage the agent is ${state.name}, attempt ${state.attempt}, waiting ${JSON.stringify(state.waiting ?? null)}: not waiting in its first attempt`);
    if (parts < total / 4) fail(`only ${parts} bytes of the download kept during the outage`);
    await sleep(outageMs / 2);
    // What the proxy handed to sockets while the link was down never reached the device.
    const lostInOutage = rig.proxy!.bytesToClients - sentAtCut;
    await rig.vm!.setLink(true);
    const back = Date.now();
    note(`link up after ${Math.round((back - cutAt) / 60_000)} min`);
    await waitHealthyOn(rig, release, 40 * 60_000 * slow).catch((error: Error) => fail(error.message));
    note(`healthy on v4 ${Math.round((Date.now() - back) / 1000)} s after the link came back`);
    const sent = rig.proxy!.bytesToClients - lostInOutage;
    // Resumed, not restarted: a restart from byte 0 sends what was kept again on top of the delta.
    note(`the server sent ${Math.round(sent / MIB)} MiB that could arrive (and ${Math.round(lostInOutage / MIB)} MiB into sockets while the link was down) for a ${Math.round(total / MIB)} MiB delta, ${Math.round(parts / MIB)} MiB of it kept at the cut`);
    if (sent > total + parts / 2) fail(`the server sent ${sent} bytes (besides ${lostInOutage} during the outage) for a ${total}-byte delta of which ${parts} were kept: the download started over`);
    const { device } = await rig.device();
    if (rig.vm?.running) for (const failure of await checkInside(rig.console(), device, release.commit, "healthy-v2", false, slow)) fail(failure);
  },
};
