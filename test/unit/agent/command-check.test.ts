import { describe, expect, it } from "vitest";
import { acceptedAfter, checkFresh, StaleCommandError, withdrawalCancels, type AcceptedCommand } from "../../../device/agent/command-check.ts";
import type { AgentState, UpdateTarget } from "../../../device/agent/machine.ts";
import type { Command } from "../../../shared/wire/command.ts";

const T0 = "2030-01-01T00:00:00.000Z";
const T1 = "2030-01-01T00:00:01.000Z";
const T2 = "2030-01-01T00:00:02.000Z";
const signedManifest = { manifest: {}, signatures: [{ keyid: "a".repeat(64), sig: "x" }] };
const update = (id: string, issued: string): Command => ({ type: "update", id, issued, rollout: id, manifest: signedManifest });
const withdraw = (id: string, issued: string, reason: "paused" | "aborted" = "aborted"): Command => ({ type: "withdraw", id, issued, reason });
const withdrawnAt = (id: string, issued: string): AcceptedCommand => ({ id, type: "withdraw", issued });

describe("a command's freshness", () => {
  it.each<[string, Command, AcceptedCommand | undefined]>([
    ["any command when none was accepted before", update("r-1", T0), undefined],
    ["an update issued after the last withdrawal (a resumed rollout)", update("r-1", T2), withdrawnAt("r-1", T1)],
    ["the accepted command itself again (a retained copy on reconnect)", withdraw("r-1", T1), withdrawnAt("r-1", T1)],
    ["a withdrawal issued after the last one", withdraw("r-2", T2), withdrawnAt("r-1", T1)],
  ])("takes %s", (_what, command, last) => {
    expect(() => checkFresh(command, last)).not.toThrow();
  });

  it.each<[string, Command, AcceptedCommand, RegExp]>([
    ["the withdrawn update, replayed", update("r-1", T0), withdrawnAt("r-1", T1), /^command r-1 \(update\) was issued at 2030-01-01T00:00:00.000Z, before the withdrawal of r-1 issued at 2030-01-01T00:00:01.000Z that this device accepted: a stale or replayed copy$/],
    ["another rollout's older update", update("r-0", T0), withdrawnAt("r-1", T1), /before the withdrawal of r-1/],
    ["an update issued with the withdrawal's very time", update("r-1", T1), withdrawnAt("r-1", T1), /at the same time as the withdrawal of r-1/],
    ["an older withdrawal", withdraw("r-0", T0), withdrawnAt("r-1", T1), /^command r-0 \(withdraw\) was issued at .*, before the withdrawal of r-1/],
  ])("refuses %s", (_what, command, last, message) => {
    expect(() => checkFresh(command, last)).toThrow(StaleCommandError);
    expect(() => checkFresh(command, last)).toThrow(message);
    try {
      checkFresh(command, last);
    } catch (error) {
      expect((error as StaleCommandError).code).toBe("E_COMMAND_STALE");
    }
  });
});

describe("what the state file keeps", () => {
  it.each<[string, Command, AcceptedCommand | undefined, AcceptedCommand | undefined]>([
    ["a withdrawal when none was kept", withdraw("r-1", T1), undefined, withdrawnAt("r-1", T1)],
    ["a newer withdrawal over an older one", withdraw("r-2", T2), withdrawnAt("r-1", T1), withdrawnAt("r-2", T2)],
    ["the older withdrawal kept over a repeat", withdraw("r-1", T1), withdrawnAt("r-1", T1), withdrawnAt("r-1", T1)],
    ["nothing new for an update", update("r-3", T2), withdrawnAt("r-1", T1), withdrawnAt("r-1", T1)],
  ])("%s", (_what, command, last, kept) => {
    expect(acceptedAfter(command, last)).toEqual(kept);
  });
});

describe("what a withdrawal stops", () => {
  const V1 = { commit: "1".repeat(64), version: "1" };
  const target: UpdateTarget = { command: "r-1", ref: "r", commit: "2".repeat(64), version: "2", sequence: 2, from: V1, manifest: {} };
  it.each<[string, AgentState, Command, boolean]>([
    ["an abort stops the withdrawn update's download", { name: "downloading", target, attempt: 1 }, withdraw("r-1", T1, "aborted"), true],
    ["a pause lets a started download go on", { name: "downloading", target, attempt: 1 }, withdraw("r-1", T1, "paused"), false],
    ["an abort of another rollout stops nothing", { name: "downloading", target, attempt: 1 }, withdraw("r-9", T1, "aborted"), false],
    ["an abort once staged stops nothing", { name: "staged", target }, withdraw("r-1", T1, "aborted"), false],
    ["an abort while idle stops nothing", { name: "idle" }, withdraw("r-1", T1, "aborted"), false],
  ])("%s", (_what, state, command, cancels) => {
    expect(withdrawalCancels(state, command as Extract<Command, { type: "withdraw" }>)).toBe(cancels);
  });
});
