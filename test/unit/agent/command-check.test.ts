import { describe, expect, it } from "vitest";
import { anyOf } from "../../../shared/trust/signers.ts";
import { acceptedAfter, checkFresh, checkTarget, CommandForAnotherDeviceError, MAX_WITHDRAWN_KEPT, StaleCommandError, withdrawalCancels, withdrawnAfter, WithdrawnUpdateError, type AcceptedCommand, type WithdrawnUpdate } from "../../../device/agent/command-check.ts";
import type { AgentState, UpdateTarget } from "../../../device/agent/machine.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { verifySignedManifest, WrongChannelError } from "../../../shared/verify/manifest.ts";
import type { Command } from "../../../shared/wire/command.ts";
import { signManifest, type Manifest } from "../../../shared/wire/manifest.ts";

const T0 = "2030-01-01T00:00:00.000Z";
const T1 = "2030-01-01T00:00:01.000Z";
const T2 = "2030-01-01T00:00:02.000Z";
const signedManifest = { manifest: {}, signatures: [{ keyid: "a".repeat(64), sig: "x" }] };
const update = (id: string, issued: string, device = "dev-1"): Command => ({ type: "update", id, device, issued, rollout: id, manifest: signedManifest });
const withdraw = (id: string, issued: string, reason: "paused" | "aborted" = "aborted"): Command => ({ type: "withdraw", id, device: "dev-1", issued, reason });
const withdrawnAt = (id: string, issued: string): AcceptedCommand => ({ id, type: "withdraw", issued });
const updatedAt = (id: string, issued: string): AcceptedCommand => ({ id, type: "update", issued });

describe("a command's target", () => {
  it("takes a command that names this device", () => {
    expect(() => checkTarget(update("r-1", T0), "dev-1")).not.toThrow();
  });

  it.each<[string, Command, RegExp]>([
    ["a command copied from another device's topic", update("r-1", T0, "dev-2"), /^command r-1 \(update\) is for device dev-2, not this device \(dev-1\): refused$/],
    ["a withdrawal for another device", { ...withdraw("r-1", T0), device: "dev-10" }, /is for device dev-10, not this device \(dev-1\)/],
    ["a reboot for another device", { type: "reboot", id: "b-1", device: "dev-2", issued: T0 }, /^command b-1 \(reboot\) is for device dev-2/],
  ])("refuses %s", (_what, command, message) => {
    expect(() => checkTarget(command, "dev-1")).toThrow(CommandForAnotherDeviceError);
    expect(() => checkTarget(command, "dev-1")).toThrow(message);
    try {
      checkTarget(command, "dev-1");
    } catch (error) {
      expect((error as CommandForAnotherDeviceError).code).toBe("E_COMMAND_WRONG_DEVICE");
    }
  });
});

describe("a command's freshness", () => {
  it.each<[string, Command, AcceptedCommand | undefined]>([
    ["any command when none was accepted before", update("r-1", T0), undefined],
    ["an update issued after the last withdrawal (a resumed rollout)", update("r-1", T2), withdrawnAt("r-1", T1)],
    ["the accepted command itself again (a retained copy on reconnect)", withdraw("r-1", T1), withdrawnAt("r-1", T1)],
    ["a withdrawal issued after the last one", withdraw("r-2", T2), withdrawnAt("r-1", T1)],
    ["a newer update after an update", update("r-2", T2), updatedAt("r-1", T1)],
    ["the same update re-delivered", update("r-1", T1), updatedAt("r-1", T1)],
    ["the withdrawal of the update just taken", withdraw("r-1", T2), updatedAt("r-1", T1)],
  ])("takes %s", (_what, command, last) => {
    expect(() => checkFresh(command, last)).not.toThrow();
  });

  it.each<[string, Command, AcceptedCommand, RegExp]>([
    ["the withdrawn update, replayed", update("r-1", T0), withdrawnAt("r-1", T1), /^command r-1 \(update\) was issued at 2030-01-01T00:00:00.000Z, before the withdrawal of r-1 issued at 2030-01-01T00:00:01.000Z that this device accepted: a stale or replayed copy$/],
    ["another rollout's older update", update("r-0", T0), withdrawnAt("r-1", T1), /before the withdrawal of r-1/],
    ["an update issued with the withdrawal's very time", update("r-1", T1), withdrawnAt("r-1", T1), /at the same time as the withdrawal of r-1/],
    ["an older withdrawal", withdraw("r-0", T0), withdrawnAt("r-1", T1), /^command r-0 \(withdraw\) was issued at .*, before the withdrawal of r-1/],
    ["an older update replayed after a newer one", update("r-0", T0), updatedAt("r-1", T1), /^command r-0 \(update\) was issued at 2030-01-01T00:00:00.000Z, before command r-1 \(update\) issued at 2030-01-01T00:00:01.000Z that this device accepted: a stale or replayed copy$/],
    ["an older copy of the update taken (re-published since)", update("r-1", T0), updatedAt("r-1", T1), /before command r-1 \(update\)/],
    ["another command with the very same time", update("r-2", T1), updatedAt("r-1", T1), /at the same time as command r-1 \(update\)/],
    ["a withdrawal older than the update taken", withdraw("r-1", T0), updatedAt("r-1", T1), /^command r-1 \(withdraw\) was issued at .*, before command r-1 \(update\)/],
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
    ["an update, newest, over a withdrawal", update("r-3", T2), withdrawnAt("r-1", T1), updatedAt("r-3", T2)],
    ["an update when none was kept", update("r-1", T0), undefined, updatedAt("r-1", T0)],
    ["a reboot command too", { type: "reboot", id: "b-1", device: "dev-1", issued: T2 }, updatedAt("r-1", T1), { id: "b-1", type: "reboot", issued: T2 }],
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

describe("what polling must not install: withdrawn updates", () => {
  const C2 = "2".repeat(64);
  const C3 = "3".repeat(64);
  const target: UpdateTarget = { command: "r-1", ref: "r", commit: C2, version: "2", sequence: 2, from: { commit: "1".repeat(64), version: "1" }, manifest: {} };
  const updateTo = (id: string, issued: string, commit: string): Command => ({ ...(update(id, issued) as Extract<Command, { type: "update" }>), manifest: { ...signedManifest, manifest: { commit } } });
  const gone = (id: string, commit: string, reason: "paused" | "aborted" = "aborted"): WithdrawnUpdate => ({ id, commit, reason });
  it.each<[string, Command, WithdrawnUpdate[], AcceptedCommand | undefined, AgentState, WithdrawnUpdate[]]>([
    ["a withdrawal that names its commit, the update never seen", { ...withdraw("r-1", T1), commit: C2 } as Command, [], undefined, { name: "idle" }, [gone("r-1", C2)]],
    ["a withdrawal of the update accepted last", withdraw("r-1", T1, "paused"), [], acceptedAfter(updateTo("r-1", T0, C2), undefined), { name: "idle" }, [gone("r-1", C2, "paused")]],
    ["a withdrawal of the update in flight", withdraw("r-1", T1), [], undefined, { name: "staged", target }, [gone("r-1", C2)]],
    ["a withdrawal whose commit is unknown keeps nothing", withdraw("r-9", T1), [gone("r-1", C2)], undefined, { name: "idle" }, [gone("r-1", C2)]],
    ["one entry per commit, the newest", { ...withdraw("r-2", T1), commit: C2 } as Command, [gone("r-1", C2)], undefined, { name: "idle" }, [gone("r-2", C2)]],
    ["a newer update of that rollout lifts it (resume)", updateTo("r-1", T2, C2), [gone("r-1", C2), gone("r-3", C3)], undefined, { name: "idle" }, [gone("r-3", C3)]],
    ["a newer update to that commit lifts it", updateTo("r-4", T2, C3), [gone("r-1", C2), gone("r-3", C3)], undefined, { name: "idle" }, [gone("r-1", C2)]],
    ["a reboot command changes nothing", { type: "reboot", id: "b-1", device: "dev-1", issued: T2 }, [gone("r-1", C2)], undefined, { name: "idle" }, [gone("r-1", C2)]],
  ])("%s", (_what, command, kept, last, state, after) => {
    expect(withdrawnAfter(command, kept, last, state)).toEqual(after);
  });

  it(`keeps the newest ${MAX_WITHDRAWN_KEPT}`, () => {
    let kept: WithdrawnUpdate[] = [];
    for (let i = 0; i < MAX_WITHDRAWN_KEPT + 3; i++) kept = withdrawnAfter({ ...withdraw(`r-${i}`, T1), commit: String(i % 10).repeat(63) + "a" } as Command, kept, undefined, { name: "idle" });
    expect(kept).toHaveLength(10); // one per commit: ten commits here
    kept = [];
    for (let i = 0; i < MAX_WITHDRAWN_KEPT + 3; i++) kept = withdrawnAfter({ ...withdraw(`r-${i}`, T1), commit: i.toString(16).padStart(64, "0") } as Command, kept, undefined, { name: "idle" });
    expect(kept.map((w) => w.id)).toEqual(Array.from({ length: MAX_WITHDRAWN_KEPT }, (_, i) => `r-${i + 3}`));
  });

  it("names the withdrawn update in its refusal", () => {
    const error = new WithdrawnUpdateError(gone("r-1", C2));
    expect(error.code).toBe("E_UPDATE_WITHDRAWN");
    expect(error.message).toBe(`the channel publishes ${C2}, the target of update r-1 that the server withdrew (rollout aborted): not installed by polling`);
  });
});

describe("a manifest's channel", () => {
  const key = generateKeyPair();
  const now = new Date(T0);
  const manifest: Manifest = { schema: 1, ref: "os/x", commit: "2".repeat(64), version: "2", sequence: 2, architecture: "amd64", channel: "stable", issued: T0, expires: T2, downgrade: false, deltas: [] };
  const expectations = { signers: anyOf([key.publicKey]), now, architecture: "amd64", ref: "os/x" };

  it.each([
    ["the channel the device follows", "stable", "stable"],
    ["any channel when the caller names none", "beta", undefined],
  ])("takes a manifest for %s", (_what, channel, follows) => {
    expect(verifySignedManifest(signManifest({ ...manifest, channel }, [key]), { ...expectations, channel: follows }).channel).toBe(channel);
  });

  it("refuses a manifest for another channel than the device follows", () => {
    const signed = signManifest({ ...manifest, channel: "beta" }, [key]);
    expect(() => verifySignedManifest(signed, { ...expectations, channel: "stable" })).toThrow(WrongChannelError);
    expect(() => verifySignedManifest(signed, { ...expectations, channel: "stable" })).toThrow(/^manifest is for channel beta, this device follows stable$/);
  });
});
