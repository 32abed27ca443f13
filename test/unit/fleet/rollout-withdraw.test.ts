/**
 * Which devices' retained update is replaced by the signed withdrawal (issue 18, finding 5):
 * `withdrawalFor` as a table, and the engine over a real store: after a restart the withdrawals a
 * paused or aborted rollout is due are published again (the old process may have recorded the
 * state and died before publishing), and a device a later rollout commanded keeps that command.
 */
import { anyOf } from "../../../shared/trust/signers.ts";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { verifyCommand } from "../../../shared/wire/command.ts";
import { RolloutEngine } from "../../../server/fleet/rollouts.ts";
import { SqliteFleetStore } from "../../../server/fleet/store-sqlite.ts";
import { withdrawalFor, type RolloutDeviceStatus, type RolloutState } from "../../../server/fleet/waves.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const key = generateKeyPair();
const t0 = new Date("2026-11-21T12:00:00Z");
let dir: string;
let store: SqliteFleetStore;
let published: string[];

function engine(): RolloutEngine {
  return new RolloutEngine({
    store,
    repo: dir,
    key,
    prefix: "apt-ostree/",
    log: silentLogger(),
    now: () => t0,
    publish: async (topic, payload, retain) => {
      const command = verifyCommand(Buffer.from(payload), anyOf([key.publicKey]));
      expect(topic).toBe(`apt-ostree/devices/${command.device}/cmd`);
      expect(retain).toBe(true);
      published.push(`${command.device} ${command.type} ${command.id}${command.type === "withdraw" ? ` ${command.reason}` : ""}`);
    },
  });
}

/** A rollout created `order` seconds after t0, in `state`, its devices at the given statuses (all but pending were sent). */
async function rollout(id: string, order: number, state: RolloutState, statuses: Record<string, RolloutDeviceStatus>): Promise<void> {
  const at = new Date(t0.getTime() + order * 1000).toISOString();
  for (const deviceId of Object.keys(statuses)) {
    await store.enrollPending(deviceId, "KEY", t0);
    await store.acceptDevice(deviceId, t0);
  }
  await store.createRollout(
    {
      id, ref: "r", channel: "stable", version: "2", commit: "c".repeat(64), selector: { groups: [], tags: [], devices: Object.keys(statuses) },
      plan: { waves: [100], waveDelaySeconds: 0, waveTimeoutSeconds: 60, maxFailuresPercent: 100 },
      progress: { state, currentWave: 0, waveStartedAt: at, waveCompletedAt: null }, pauseReason: null, createdAt: at, updatedAt: at,
    },
    Object.keys(statuses).map((deviceId) => ({ deviceId, wave: 0 })),
  );
  for (const [deviceId, status] of Object.entries(statuses)) {
    if (status === "pending") continue;
    await store.markRolloutDevicesSent(id, [deviceId], t0);
    if (status !== "sent") await store.setRolloutDeviceStatus(id, deviceId, status, null, t0);
  }
}

beforeEach(async () => {
  dir = await makeTempDir("rollout-withdraw");
  store = new SqliteFleetStore(join(dir, "fleet.db"));
  published = [];
});
afterEach(async () => {
  await store.close();
  await removeTree(dir);
});

describe("withdrawalFor", () => {
  it.each<[RolloutState, RolloutDeviceStatus, string | null, "paused" | "aborted" | null]>([
    ["running", "sent", t0.toISOString(), null],
    ["running", "in-progress", t0.toISOString(), null],
    ["running", "failed", t0.toISOString(), "aborted"],
    ["running", "rolled-back", t0.toISOString(), "aborted"],
    ["running", "failed", null, null],
    ["paused", "sent", t0.toISOString(), "paused"],
    ["paused", "in-progress", t0.toISOString(), null],
    ["paused", "failed", t0.toISOString(), "aborted"],
    ["aborted", "sent", t0.toISOString(), "aborted"],
    ["aborted", "in-progress", t0.toISOString(), "aborted"],
    ["aborted", "healthy", t0.toISOString(), null],
    ["aborted", "pending", null, null],
    ["completed", "rolled-back", t0.toISOString(), "aborted"],
    ["completed", "healthy", t0.toISOString(), null],
  ])("a %s rollout's %s device (sent at %s): %s", (state, status, sentAt, expected) => {
    expect(withdrawalFor(state, { status, sentAt })).toBe(expected);
  });
});

describe("withdrawals after a restart", () => {
  it("publishes again every withdrawal a paused or aborted rollout's devices are due, however often", async () => {
    await rollout("r-aborted", 0, "aborted", { a1: "failed", a2: "in-progress", a3: "pending", a4: "healthy", a5: "sent" });
    await rollout("r-paused", 1, "paused", { p1: "sent", p2: "in-progress", p3: "rolled-back" });
    const expected = ["a1 withdraw r-aborted aborted", "a2 withdraw r-aborted aborted", "a5 withdraw r-aborted aborted", "p1 withdraw r-paused paused", "p3 withdraw r-paused aborted"];
    await engine().resume();
    expect(published.sort()).toEqual(expected);
    published = [];
    await engine().resume();
    expect(published.sort()).toEqual(expected);
  });

  it("leaves a device a later rollout commanded with that rollout's command, on a restart and on an abort", async () => {
    await rollout("r-old", 0, "paused", { d1: "failed", d2: "failed" });
    await rollout("r-new", 1, "paused", { d1: "in-progress" });
    const restarted = engine();
    await restarted.resume();
    expect(published).toEqual(["d2 withdraw r-old aborted"]);
    published = [];
    await restarted.setState("r-old", "abort");
    expect(published).toEqual(["d2 withdraw r-old aborted"]);
  });
});
