import { describe, expect, it } from "vitest";
import { assignWaves, decide, parseWaves, statusFromReport, type RolloutMember, type RolloutPlan, type RolloutProgress } from "../../../server/fleet/waves.ts";

const plan: RolloutPlan = { waves: [10, 50, 100], waveDelaySeconds: 60, waveTimeoutSeconds: 600, maxFailuresPercent: 20 };
const t0 = new Date("2026-11-21T12:00:00Z");
const at = (s: number) => new Date(t0.getTime() + s * 1000);
const running = (extra: Partial<RolloutProgress> = {}): RolloutProgress => ({ state: "running", currentWave: 0, waveStartedAt: t0.toISOString(), waveCompletedAt: null, ...extra });
const member = (deviceId: string, wave: number, status: RolloutMember["status"], online = true): RolloutMember => ({ deviceId, wave, status, online });

describe("wave sizes", () => {
  it.each([
    ["1%,10%,50%,100%", [1, 10, 50, 100]],
    ["25,100", [25, 100]],
  ])("parses %s", (text, waves) => expect(parseWaves(text)).toEqual(waves));

  it.each([
    ["10%,5%,100%", /waves must grow: 10% then 5%/],
    ["10%,50%", /last wave must be 100%/],
    ["0%,100%", /must be above 0%/],
    ["ten,100%", /'ten' is not a percentage/],
  ])("rejects %s", (text, message) => expect(() => parseWaves(text)).toThrow(message));

  it("cuts 20 devices into 1%, 10%, 50%, 100% waves of 1, 1, 8 and 10, the same way every time", () => {
    const ids = Array.from({ length: 20 }, (_, i) => `dev-${i}`);
    const waves = assignWaves("r-1", ids, [1, 10, 50, 100]);
    const sizes = [0, 1, 2, 3].map((w) => [...waves.values()].filter((v) => v === w).length);
    expect(sizes).toEqual([1, 1, 8, 10]);
    expect(assignWaves("r-1", [...ids].reverse(), [1, 10, 50, 100])).toEqual(waves);
    expect(assignWaves("r-2", ids, [1, 10, 50, 100])).not.toEqual(waves);
  });
});

describe("rollout decisions", () => {
  it("sends to the online pending devices of the current and earlier waves", () => {
    const members = [member("a", 0, "pending"), member("b", 0, "pending", false), member("c", 1, "pending")];
    expect(decide(plan, running(), members, t0)).toEqual({ kind: "send", deviceIds: ["a"] });
  });

  it("waits while the wave is in progress, then times out the silent devices", () => {
    const members = [member("a", 0, "healthy"), member("b", 0, "sent"), member("c", 1, "pending")];
    expect(decide(plan, running(), members, at(599))).toEqual({ kind: "wait" });
    expect(decide(plan, running(), members, at(600))).toEqual({ kind: "time-out", deviceIds: ["b"] });
  });

  it("completes a wave, waits the delay, then starts the next", () => {
    const members = [member("a", 0, "healthy"), member("c", 1, "pending")];
    expect(decide(plan, running(), members, at(10))).toEqual({ kind: "wave-completed", wave: 0 });
    const done = running({ waveCompletedAt: at(10).toISOString() });
    expect(decide(plan, done, members, at(69))).toEqual({ kind: "wait" });
    expect(decide(plan, done, members, at(70))).toEqual({ kind: "next-wave", wave: 1 });
  });

  it("completes after the last wave", () => {
    expect(decide(plan, running({ currentWave: 2, waveCompletedAt: t0.toISOString() }), [member("a", 2, "healthy")], t0)).toEqual({ kind: "complete" });
  });

  it("pauses, saying why, when failures pass the threshold", () => {
    const members = [member("a", 0, "failed"), member("b", 0, "rolled-back"), ...["c", "d", "e", "f", "g", "h"].map((id) => member(id, 1, "pending"))];
    expect(decide(plan, running(), members, t0)).toEqual({ kind: "pause", reason: "2 of 8 devices failed or rolled back (25.0%), above the 20% threshold" });
  });

  it("does nothing for a paused rollout", () => {
    expect(decide(plan, running({ state: "paused" }), [member("a", 0, "pending")], t0)).toEqual({ kind: "wait" });
  });

  it.each([
    ["downloading", undefined, "in-progress"],
    ["healthy", "t", "healthy"],
    ["healthy", "old", null],
    ["rolled-back", "old", "rolled-back"],
    ["idle", undefined, null],
  ])("maps a %s report (booted %s) to %s", (state, booted, status) => {
    expect(statusFromReport(state, booted, "t")).toBe(status);
  });
});
