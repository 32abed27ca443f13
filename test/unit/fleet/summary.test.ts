import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SqliteFleetStore } from "../../../server/fleet/store-sqlite.ts";
import { readFleetSummary, summarizeFleet } from "../../../server/fleet/summary.ts";
import type { RolloutRecord } from "../../../server/fleet/store.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let store: SqliteFleetStore;
const t0 = new Date("2026-01-01T00:00:00Z");

beforeEach(async () => {
  dir = await makeTempDir("summary");
  store = new SqliteFleetStore(join(dir, "fleet.db"));
});
afterEach(async () => {
  await store.close();
  await removeTree(dir);
});

async function bootedDevice(id: string, version: string, counter = 1): Promise<void> {
  await store.enrollPending(id, "KEY", t0);
  await store.acceptDevice(id, t0);
  await store.recordReport({ deviceId: id, counter, sent: t0.toISOString(), state: "healthy", booted: { commit: "0".repeat(64), version } }, t0);
}

describe("fleet summary", () => {
  it("counts versions named like Object's own properties as plain numbers", async () => {
    for (const [id, version] of [["a", "constructor"], ["b", "constructor"], ["c", "__proto__"], ["d", "toString"]] as const) await bootedDevice(id, version);
    const summary = await readFleetSummary(store);
    expect(summary.byVersion).toEqual({ constructor: 2, ["__proto__"]: 1, toString: 1 });
    expect(Object.getPrototypeOf(summary.byVersion)).toBe(Object.prototype);
    expect(JSON.parse(JSON.stringify(summary.byVersion))).toEqual({ constructor: 2, ["__proto__"]: 1, toString: 1 });
  });

  it("sums a rollout's devices from its status counts", () => {
    const rollout = { id: "r-1", ref: "x", version: "2", progress: { state: "running" } } as unknown as RolloutRecord;
    const counts = { devices: 0, online: 0, byEnrollment: { pending: 0, preauthorized: 0, accepted: 0, rejected: 0, revoked: 0 }, byState: {}, byVersion: {} };
    const summary = summarizeFleet(counts, [{ rollout, statuses: new Map([["healthy", 3], ["failed", 1], ["pending", 2]]) }]);
    expect(summary.rollouts).toEqual([{ id: "r-1", ref: "x", version: "2", state: "running", devices: 6, healthy: 3, failed: 1, rolledBack: 0 }]);
  });
});
