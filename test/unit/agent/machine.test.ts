import { describe, expect, it } from "vitest";
import { bootVerdict, IllegalTransitionError, MAX_LOST_STAGES, MAX_STAGE_ATTEMPTS, stageBackoffMs, step, type AgentState, type UpdateTarget } from "../../../device/agent/machine.ts";

const V1 = { commit: "1".repeat(64), version: "1" };
const target: UpdateTarget = { command: "r-1", ref: "r", commit: "2".repeat(64), version: "2", sequence: 2, from: V1, manifest: {} };
const failedCheck = { name: "app.sh", kind: "required" as const, ok: false, output: "app did not answer\n" };

describe("agent state machine", () => {
  it("walks an update: command -> downloading -> staged -> rebooting -> verifying -> healthy", () => {
    let t = step({ name: "idle" }, { type: "command", target });
    expect(t.state).toEqual({ name: "downloading", target, attempt: 1 });
    expect(t.effects).toEqual([{ kind: "stage", target, attempt: 1, delayMs: 0 }, { kind: "report" }]);
    t = step(t.state, { type: "stage-succeeded" });
    expect(t.state.name).toBe("staged");
    expect(t.effects.map((e) => e.kind)).toEqual(["report", "ask-reboot-strategy"]);
    t = step(t.state, { type: "reboot-allowed", bootId: "boot-1" });
    expect(t.state.name).toBe("rebooting");
    expect(t.effects).toEqual([{ kind: "report" }, { kind: "reboot", arm: true }]);
    t = step(t.state, { type: "started", bootedCommit: target.commit, bootId: "boot-2" });
    expect(t.state).toEqual({ name: "verifying", target, bootId: "boot-2", failedChecks: [] });
    expect(t.effects.map((e) => e.kind)).toEqual(["report", "run-health-checks"]);
    t = step(t.state, { type: "health-checked", results: [{ name: "ok.sh", kind: "required", ok: true, output: "" }, { name: "w.sh", kind: "wanted", ok: false, output: "meh" }] });
    expect(t.state.name).toBe("healthy");
    expect(t.effects.map((e) => e.kind)).toEqual(["bless", "report"]);
  });

  it("reboots on a failed required check and reports the check's output after the fallback", () => {
    let t = step({ name: "verifying", target, bootId: "boot-2", failedChecks: [] }, { type: "health-checked", results: [failedCheck] });
    expect(t.state).toEqual({ name: "verifying", target, bootId: "boot-2", failedChecks: [failedCheck] });
    expect(t.effects.slice(1)).toEqual([{ kind: "report" }, { kind: "reboot", arm: false }]);
    // The counter still had a try: the same deployment again, checked again.
    t = step(t.state, { type: "started", bootedCommit: target.commit, bootId: "boot-3" });
    expect(t.state).toMatchObject({ name: "verifying", bootId: "boot-3", failedChecks: [failedCheck] });
    t = step(t.state, { type: "started", bootedCommit: V1.commit, bootId: "boot-4" });
    expect(t.state).toMatchObject({ name: "rolled-back", reason: "required health check app.sh failed: app did not answer" });
    expect(t.effects).toEqual([{ kind: "make-rollback-permanent", badCommit: target.commit }, { kind: "bless" }, { kind: "report" }]);
  });

  it("says the new version did not boot when the bootloader fell back before any check ran", () => {
    const t = step({ name: "rebooting", target, bootId: "boot-1" }, { type: "started", bootedCommit: V1.commit, bootId: "boot-2" });
    expect(t.state).toMatchObject({ name: "rolled-back", reason: "2 did not boot; the bootloader fell back to 1" });
  });

  it("stages again, not a rollback, when the power went before the shutdown wrote the new deployment", () => {
    const rebooting: AgentState = { name: "rebooting", target, bootId: "boot-1" };
    const lost = step(rebooting, { type: "started", bootedCommit: V1.commit, bootId: "boot-2", deployedCommits: [V1.commit] });
    expect(lost.state).toEqual({ name: "downloading", target: { ...target, lostStages: 1 }, attempt: 1 });
    expect(lost.effects.map((e) => e.kind)).toEqual(["bless", "log", "stage", "report"]);
    expect(lost.effects).toContainEqual({ kind: "log", level: "warn", message: "the power went before 2 was written at shutdown; 1 booted as before: staging 2 again" });
    // Written, booted and fallen back from: a rollback as before.
    expect(step(rebooting, { type: "started", bootedCommit: V1.commit, bootId: "boot-2", deployedCommits: [target.commit, V1.commit] }).state.name).toBe("rolled-back");
  });

  it("gives up with the reason after the staged deployment was lost three times in a row, and never restages an aborted update", () => {
    let state: AgentState = { name: "rebooting", target, bootId: "boot-1" };
    for (let lost = 1; lost < MAX_LOST_STAGES; lost++) {
      const t = step(state, { type: "started", bootedCommit: V1.commit, bootId: `boot-${lost + 1}`, deployedCommits: [V1.commit] });
      expect(t.state).toMatchObject({ name: "downloading", target: { lostStages: lost } });
      state = { name: "rebooting", target: (t.state as { target: UpdateTarget }).target, bootId: `boot-${lost + 1}` };
    }
    const last = step(state, { type: "started", bootedCommit: V1.commit, bootId: "boot-9", deployedCommits: [V1.commit] });
    expect(last.state).toMatchObject({ name: "failed", error: expect.stringContaining("3 times in a row: the shutdown does not write the staged deployment") });
    expect(last.effects.map((e) => e.kind)).toEqual(["bless", "report", "discard-downloads"]);
    const aborted = step({ name: "staged", target }, { type: "started", bootedCommit: V1.commit, bootId: "b", deployedCommits: [V1.commit], abortedCommands: [target.command] });
    expect(aborted.state).toEqual({ name: "idle" });
    expect(aborted.effects).not.toContainEqual(expect.objectContaining({ kind: "stage" }));
  });

  it("stages again when a power cut lost the staged deployment before any reboot", () => {
    const lost = step({ name: "staged", target }, { type: "started", bootedCommit: V1.commit, bootId: "b", deployedCommits: [V1.commit] });
    expect(lost.state).toEqual({ name: "downloading", target: { ...target, lostStages: 1 }, attempt: 1 });
    expect(lost.effects).toContainEqual({ kind: "stage", target: { ...target, lostStages: 1 }, attempt: 1, delayMs: 0 });
    expect(lost.effects).not.toContainEqual({ kind: "bless" });
    expect(step({ name: "staged", target }, { type: "started", bootedCommit: V1.commit, bootId: "b", deployedCommits: [target.commit, V1.commit] }).effects).toContainEqual({ kind: "ask-reboot-strategy" });
  });

  it("says the new version stopped during its checks when it fell back from verifying with no failed check (a hang the watchdog reset)", () => {
    const t = step({ name: "verifying", target, bootId: "boot-2", failedChecks: [] }, { type: "started", bootedCommit: V1.commit, bootId: "boot-3" });
    expect(t.state).toMatchObject({ name: "rolled-back", reason: "2 booted but stopped before its health checks finished (a hang the watchdog reset, or a power loss); the bootloader fell back to 1" });
  });

  it("fails when the system booted something it neither staged nor came from", () => {
    const t = step({ name: "rebooting", target, bootId: "boot-1" }, { type: "started", bootedCommit: "9".repeat(64), bootId: "boot-2" });
    expect(t.state).toMatchObject({ name: "failed", error: expect.stringContaining("neither 2 nor 1") });
  });

  it("answers a repeated command id by reporting, in any state, without redoing it", () => {
    const states: AgentState[] = [
      { name: "downloading", target, attempt: 2 },
      { name: "staged", target },
      { name: "healthy", target, health: [] },
      { name: "rolled-back", target, reason: "x", health: [] },
      { name: "failed", target, error: "x" },
    ];
    for (const state of states) expect(step(state, { type: "command", target })).toEqual({ state, effects: [{ kind: "report" }] });
  });

  it("ignores another command while an update is in flight, and takes it once the last one ended", () => {
    const other = { ...target, command: "r-2", commit: "3".repeat(64), version: "3" };
    expect(step({ name: "staged", target }, { type: "command", target: other }).effects).toEqual([expect.objectContaining({ kind: "log", level: "warn" })]);
    expect(step({ name: "healthy", target, health: [] }, { type: "command", target: other }).state).toMatchObject({ name: "downloading", target: other });
  });

  it("calls an update to the booted commit healthy without downloading", () => {
    const t = step({ name: "idle" }, { type: "command", target: { ...target, commit: V1.commit } });
    expect(t.state.name).toBe("healthy");
    expect(t.effects.some((e) => e.kind === "stage")).toBe(false);
  });

  it("retries a retryable stage failure with backoff, then fails naming the attempts", () => {
    let state: AgentState = { name: "downloading", target, attempt: 1 };
    for (let attempt = 2; attempt <= MAX_STAGE_ATTEMPTS; attempt++) {
      const t = step(state, { type: "stage-failed", error: "stalled", retryable: true });
      expect(t.effects.at(-1)).toEqual({ kind: "stage", target, attempt, delayMs: stageBackoffMs(attempt) });
      state = t.state;
    }
    expect(step(state, { type: "stage-failed", error: "stalled", retryable: true }).state).toEqual({ name: "failed", target, error: `stalled after ${MAX_STAGE_ATTEMPTS} attempts` });
    expect(step({ name: "downloading", target, attempt: 1 }, { type: "stage-failed", error: "bad signature", retryable: false }).state).toEqual({ name: "failed", target, error: "bad signature" });
  });

  it("waits out a failure of the surroundings (network, space) for as long as it lasts, without spending an attempt", () => {
    let state: AgentState = { name: "downloading", target, attempt: 2 };
    const delays: number[] = [];
    for (let i = 1; i <= 12; i++) {
      const t = step(state, { type: "stage-failed", error: "out of space; waiting for space", retryable: true, transient: true });
      expect(t.state).toEqual({ name: "downloading", target, attempt: 2, waiting: { error: "out of space; waiting for space", times: i } });
      const stage = t.effects.find((e) => e.kind === "stage");
      expect(stage).toMatchObject({ kind: "stage", target, attempt: 2, waits: i });
      delays.push((stage as { delayMs: number }).delayMs);
      // The server hears of the outage once, not at every try.
      expect(t.effects.filter((e) => e.kind === "report")).toHaveLength(i === 1 ? 1 : 0);
      expect(t.effects).not.toContainEqual({ kind: "discard-downloads" });
      state = t.state;
    }
    expect(delays.slice(0, 6)).toEqual([10_000, 20_000, 40_000, 80_000, 160_000, 300_000]);
    expect(Math.max(...delays)).toBe(300_000);
    // Bytes flowing again end the wait: the next outage backs off from 10 s and is reported again.
    const resumed = step(state, { type: "download-progressed" });
    expect(resumed).toEqual({ state: { name: "downloading", target, attempt: 2 }, effects: [] });
    const again = step(resumed.state, { type: "stage-failed", error: "stalled", retryable: true, transient: true });
    expect(again.effects).toContainEqual({ kind: "report" });
    expect(again.effects).toContainEqual(expect.objectContaining({ kind: "stage", waits: 1, delayMs: 10_000 }));
    expect(step({ name: "downloading", target, attempt: 1 }, { type: "download-progressed" }).effects).toEqual([]);
    // The update's own failure after the outage counts, and clears the wait.
    expect(step(state, { type: "stage-failed", error: "bad gateway", retryable: true }).state).toEqual({ name: "downloading", target, attempt: 3 });
    expect(step(state, { type: "stage-succeeded" }).state).toEqual({ name: "staged", target });
  });

  it("discards the downloaded delta files once an update failed for good, and only then", () => {
    const final = step({ name: "downloading", target, attempt: MAX_STAGE_ATTEMPTS }, { type: "stage-failed", error: "stalled", retryable: true });
    expect(final.effects).toContainEqual({ kind: "discard-downloads" });
    expect(step({ name: "downloading", target, attempt: 1 }, { type: "stage-failed", error: "too large", retryable: false }).effects).toContainEqual({ kind: "discard-downloads" });
    // A retry resumes what it has; a cancel keeps it for a resume too.
    expect(step({ name: "downloading", target, attempt: 1 }, { type: "stage-failed", error: "stalled", retryable: true }).effects).not.toContainEqual({ kind: "discard-downloads" });
    expect(step({ name: "downloading", target, attempt: 1 }, { type: "cancelled" }).effects).not.toContainEqual({ kind: "discard-downloads" });
  });

  it("resumes after a restart: a download continues, a staged update asks the strategy again", () => {
    expect(step({ name: "downloading", target, attempt: 3 }, { type: "started", bootedCommit: V1.commit, bootId: "b" }).effects).toContainEqual({ kind: "stage", target, attempt: 3, waits: 0, delayMs: 0 });
    const waiting: AgentState = { name: "downloading", target, attempt: 2, waiting: { error: "no space", times: 4 } };
    expect(step(waiting, { type: "started", bootedCommit: V1.commit, bootId: "b" }).effects).toContainEqual({ kind: "stage", target, attempt: 2, waits: 4, delayMs: 0 });
    expect(step({ name: "staged", target }, { type: "started", bootedCommit: V1.commit, bootId: "b" }).effects).toContainEqual({ kind: "ask-reboot-strategy" });
    expect(step({ name: "staged", target }, { type: "started", bootedCommit: target.commit, bootId: "b" }).state.name).toBe("verifying");
  });

  it("reboots again, not a fallback, when restarted in the same boot it asked to reboot from", () => {
    const rebooting: AgentState = { name: "rebooting", target, bootId: "boot-1" };
    expect(step(rebooting, { type: "started", bootedCommit: V1.commit, bootId: "boot-1" })).toEqual({ state: rebooting, effects: [{ kind: "report" }, { kind: "reboot", arm: true }] });
    const failedHere: AgentState = { name: "verifying", target, bootId: "boot-2", failedChecks: [failedCheck] };
    expect(step(failedHere, { type: "started", bootedCommit: target.commit, bootId: "boot-2" }).effects).toContainEqual({ kind: "reboot", arm: false });
    const checking: AgentState = { name: "verifying", target, bootId: "boot-2", failedChecks: [] };
    expect(step(checking, { type: "started", bootedCommit: target.commit, bootId: "boot-2" }).effects).toContainEqual({ kind: "run-health-checks" });
  });

  it("goes back to idle when a download is cancelled or the staged deployment was removed", () => {
    expect(step({ name: "downloading", target, attempt: 1 }, { type: "cancelled" }).state).toEqual({ name: "idle" });
    expect(step({ name: "staged", target }, { type: "deployments-changed", deployedCommits: [V1.commit] }).state).toEqual({ name: "idle" });
    const staged: AgentState = { name: "staged", target };
    expect(step(staged, { type: "deployments-changed", deployedCommits: [V1.commit, target.commit] })).toEqual({ state: staged, effects: [] });
    expect(() => step({ name: "idle" }, { type: "cancelled" })).toThrow(IllegalTransitionError);
  });

  it("stays staged after a manual (CLI) update until asked to reboot", () => {
    const manual = { ...target, manual: true };
    expect(step({ name: "downloading", target: manual, attempt: 1 }, { type: "stage-succeeded" }).effects).toEqual([{ kind: "report" }]);
  });

  it("finishes what a kill interrupted after an outcome was persisted: bless, permanent rollback", () => {
    expect(step({ name: "healthy", target, health: [] }, { type: "started", bootedCommit: target.commit, bootId: "b" }).effects).toEqual([{ kind: "bless" }, { kind: "report" }]);
    expect(step({ name: "rolled-back", target, reason: "x", health: [] }, { type: "started", bootedCommit: V1.commit, bootId: "b" }).effects).toEqual([
      { kind: "make-rollback-permanent", badCommit: target.commit },
      { kind: "bless" },
      { kind: "report" },
    ]);
  });

  it("refuses events a state cannot take", () => {
    expect(() => step({ name: "idle" }, { type: "stage-succeeded" })).toThrow(IllegalTransitionError);
    expect(() => step({ name: "idle" }, { type: "reboot-allowed", bootId: "boot-1" })).toThrow("the agent cannot take 'reboot-allowed' while idle");
    expect(() => step({ name: "staged", target }, { type: "health-checked", results: [] })).toThrow(IllegalTransitionError);
  });
});

describe("the boot verdict (apt-ostree boot-check)", () => {
  const verifying = (failedChecks: typeof failedCheck[]): AgentState => ({ name: "verifying", target, bootId: "b", failedChecks });

  it("waits while the checks of this boot have not finished, even with the previous try's failures on record", () => {
    expect(bootVerdict(verifying([]), false)).toBeNull();
    expect(bootVerdict(verifying([failedCheck]), false)).toBeNull();
    expect(bootVerdict({ name: "rebooting", target, bootId: "b" }, true)).toBeNull();
  });

  it("fails a boot whose required check failed in this run, naming the check", () => {
    expect(bootVerdict(verifying([failedCheck]), true)).toEqual({ verdict: "failed", version: "2", failed: [failedCheck] });
  });

  it("passes a healthy update, a permanent rollback (naming the version it fell back to) and a boot with nothing on trial", () => {
    expect(bootVerdict({ name: "healthy", target, health: [] }, true)).toEqual({ verdict: "healthy", version: "2" });
    expect(bootVerdict({ name: "rolled-back", target, reason: "2 did not boot", health: [] }, false)).toEqual({ verdict: "rolled-back", version: "1", reason: "2 did not boot" });
    expect(bootVerdict({ name: "idle" }, false)).toEqual({ verdict: "not-on-trial", state: "idle" });
    expect(bootVerdict({ name: "staged", target }, false)).toEqual({ verdict: "not-on-trial", state: "staged" });
  });
});
