/**
 * The device's real-time clock a day behind or a day ahead of the server's (qemu's `-rtc base`),
 * with no NTP to correct it: what docs/agent.md "Clocks" says must happen. TLS accepts the server
 * (certificates start a week back), the agent learns the server's time when its first token is
 * refused, comes online, and takes an update to healthy.
 */
import { checkInside, settle } from "../checks.ts";
import { SoakRig } from "../rig.ts";
import type { FaultScenario } from "./scenario.ts";
import { bootV1, inVm } from "./steps.ts";

const DAY_MS = 86_400_000;

function clockScenario(name: string, offsetMs: number, word: string): FaultScenario {
  return {
    name,
    what: `the VM's clock a day ${word} the server's`,
    expected: "online after one refused token (agent.clock.offset), then an update to v2 ends healthy",
    release: "v2",
    rig: () => ({ vm: { rtcBase: new Date(Date.now() + offsetMs) } }),
    async run({ rig, fixture, slow, note, fail }) {
      const release = fixture.releases.v2;
      await bootV1(rig, slow);
      const guest = Date.parse(await inVm(rig, "date -u +%Y-%m-%dT%H:%M:%SZ", slow));
      const skew = Math.round((guest - Date.now()) / 3_600_000);
      note(`the VM's clock is ${skew} h off the host's`);
      if (Math.abs(guest - Date.now() - offsetMs) > 3_600_000) fail(`the VM's clock is ${skew} h off, not a day ${word}`);
      const offsets = await inVm(rig, "journalctl -u apt-ostreed -o cat | grep -F agent.clock.offset | tail -1", slow);
      note(`agent: ${offsets.slice(0, 200)}`);
      if (!offsets.includes("agent.clock.offset")) fail("the agent never logged the server's time offset");
      const command = await rig.rollOut(release);
      const back = Date.now();
      const settled = await settle({ vm: rig.vm!, maxBoots: 6, slow, fixture, device: () => rig.device(), reports: (events) => SoakRig.reports(events, command, back), stableMs: 90_000 });
      note(`${settled.outcome} after ${settled.boots} boot(s)`);
      if (settled.outcome !== "healthy-v2") fail(`ended ${settled.outcome}, not healthy on v2`);
      if (rig.vm?.running) for (const failure of await checkInside(rig.console(), settled.device, release.commit, settled.outcome, false, slow)) fail(failure);
    },
  };
}

export const clockBehind = clockScenario("clock-behind", -DAY_MS, "behind");
export const clockAhead = clockScenario("clock-ahead", DAY_MS, "ahead of");
