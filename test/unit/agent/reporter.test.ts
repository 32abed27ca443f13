import { describe, expect, it } from "vitest";
import { COUNTER_BLOCK, Reporter } from "../../../device/agent/reporter.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { verifyReport, type Report } from "../../../shared/wire/report.ts";

const key = generateKeyPair();
const report: Report = { deviceId: "dev-1", counter: 0, sent: new Date().toISOString(), state: "idle" };

function harness(start: number, publish: (payload: string) => Promise<void>) {
  const disk = { ceiling: start, writes: 0 };
  const reporter = new Reporter({
    key,
    publish,
    ceiling: () => disk.ceiling,
    raiseCeiling: async (to) => {
      disk.ceiling = to;
      disk.writes++;
    },
    now: () => new Date(),
  });
  return { reporter, disk };
}

describe("reporter", () => {
  it("signs reports with growing counters, one state-file write per block, and above everything after a restart", async () => {
    const sent: string[] = [];
    const first = harness(0, async (p) => void sent.push(p));
    for (let i = 0; i < COUNTER_BLOCK + 2; i++) await first.reporter.send(report);
    expect(first.disk.writes).toBe(2);
    let last: number | null = null;
    for (const payload of sent) {
      const verified = verifyReport(payload, { deviceId: "dev-1", publicKey: key.publicKey, lastCounter: last });
      last = verified.counter;
    }
    // A restart (kill -9) resumes at the persisted ceiling: the server's replay check still passes.
    const second = harness(first.disk.ceiling, async (p) => void sent.push(p));
    await second.reporter.send(report);
    expect(verifyReport(sent.at(-1)!, { deviceId: "dev-1", publicKey: key.publicKey, lastCounter: last }).counter).toBeGreaterThan(last!);
  });

  it("keeps a report it could not publish and sends it on flush", async () => {
    let up = false;
    const sent: string[] = [];
    const { reporter } = harness(0, async (p) => {
      if (!up) throw new Error("broker away");
      sent.push(p);
    });
    await reporter.send(report);
    expect(sent).toHaveLength(0);
    up = true;
    expect(await reporter.flush()).toBe(true);
    expect(sent).toHaveLength(1);
    expect(await reporter.flush()).toBe(false);
  });
});
