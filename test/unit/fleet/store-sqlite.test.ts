import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DeviceNotFoundError, SqliteFleetStore } from "../../../server/fleet/store-sqlite.ts";
import type { Report } from "../../../shared/wire/report.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let store: SqliteFleetStore;
const t0 = new Date("2026-11-21T12:00:00Z");
const later = (s: number) => new Date(t0.getTime() + s * 1000);
const report = (counter: number, extra: Partial<Report> = {}): Report => ({ deviceId: "dev-1", counter, sent: t0.toISOString(), state: "healthy", ...extra });

beforeEach(async () => {
  dir = await makeTempDir("store");
  store = new SqliteFleetStore(join(dir, "fleet.db"));
});
afterEach(async () => {
  store.close();
  await removeTree(dir);
});

describe("SQLite fleet store", () => {
  it("enrolls an unknown device as pending once, then accepts it", () => {
    expect(store.enrollPending("dev-1", "KEY", t0)).toMatchObject({ id: "dev-1", enrollment: "pending", publicKey: "KEY", online: false });
    expect(store.enrollPending("dev-1", "OTHER", later(1)).publicKey).toBe("KEY");
    expect(store.acceptDevice("dev-1", later(2)).enrollment).toBe("accepted");
    expect(store.deviceEvents("dev-1", 10).map((e) => e.kind)).toEqual(["accepted", "enrolled"]);
  });

  it("refuses to accept a device it does not know", () => {
    expect(() => store.acceptDevice("ghost", t0)).toThrow(DeviceNotFoundError);
  });

  it("stores reports: state, booted deployment, counter and history", () => {
    store.enrollPending("dev-1", "KEY", t0);
    store.recordReport(report(1, { state: "downloading", architecture: "amd64", groups: ["lab"], progress: { bytes: 10, total: 100 } }), later(1));
    store.recordReport(report(2, { booted: { commit: "b".repeat(64), version: "2" }, staged: null }), later(2));
    const device = store.getDevice("dev-1")!;
    expect(device).toMatchObject({ state: "healthy", lastCounter: 2, architecture: "amd64", groups: ["lab"], booted: { version: "2" }, staged: null, online: true, lastSeen: later(2).toISOString() });
    const history = store.deviceEvents("dev-1", 10).filter((e) => e.kind === "report");
    expect(history.map((e) => e.report!.counter)).toEqual([2, 1]);
    expect(history[1]!.report!.progress).toEqual({ bytes: 10, total: 100 });
  });

  it("stores the pending and rollback deployments a report names, and keeps them when a report omits them", () => {
    store.enrollPending("dev-1", "KEY", t0);
    const v1 = { commit: "1".repeat(64), version: "1" };
    const v2 = { commit: "2".repeat(64), version: "2" };
    store.recordReport(report(1, { state: "staged", booted: v1, staged: v2, pending: v2, rollback: null }), later(1));
    expect(store.getDevice("dev-1")).toMatchObject({ booted: v1, staged: v2, pending: v2, rollback: null });
    store.recordReport(report(2, { state: "rebooting" }), later(2));
    expect(store.getDevice("dev-1")).toMatchObject({ pending: v2 });
    store.recordReport(report(3, { state: "healthy", booted: v2, staged: null, pending: null, rollback: v1 }), later(3));
    expect(store.getDevice("dev-1")).toMatchObject({ booted: v2, staged: null, pending: null, rollback: v1 });
  });

  it("marks a device offline and keeps that in the history", () => {
    store.enrollPending("dev-1", "KEY", t0);
    store.setOnline("dev-1", true, later(1));
    store.setOnline("dev-1", false, later(2));
    expect(store.getDevice("dev-1")!.online).toBe(false);
    expect(store.deviceEvents("dev-1", 2).map((e) => e.kind)).toEqual(["offline", "online"]);
  });

  it("keeps everything across a reopen of the file", () => {
    store.enrollPending("dev-1", "KEY", t0);
    store.acceptDevice("dev-1", t0);
    store.recordReport(report(5), later(1));
    store.close();
    store = new SqliteFleetStore(join(dir, "fleet.db"));
    expect(store.getDevice("dev-1")).toMatchObject({ enrollment: "accepted", lastCounter: 5 });
    expect(store.listDevices().map((d) => d.id)).toEqual(["dev-1"]);
  });
});
