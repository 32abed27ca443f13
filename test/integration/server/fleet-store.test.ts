/**
 * The fleet store's contract, run against each backend: SQLite (a file of the test's own) and
 * PostgreSQL (a private server, a fresh database per test). What only one backend has (SQLite's
 * old schema versions) is tested on that one.
 */
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { DeviceNotFoundError, SqliteFleetStore } from "../../../server/fleet/store-sqlite.ts";
import { PostgresFleetStore } from "../../../server/fleet/store-postgres.ts";
import { PostgresCoordination } from "../../../server/fleet/coordination.ts";
import { silentLogger } from "../../../shared/log.ts";
import { until } from "../../helpers/wait.ts";
import { MIGRATIONS } from "../../../server/fleet/store-sqlite-schema.ts";
import type { FleetStore, HistoryRetention } from "../../../server/fleet/store.ts";
import type { Report } from "../../../shared/wire/report.ts";
import { freePort } from "../../helpers/mosquitto.ts";
import { startPostgres, type RunningPostgres } from "../../helpers/postgres.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let store: FleetStore;
let postgres: RunningPostgres | null = null;
let databases = 0;

interface Backend {
  name: "SQLite" | "PostgreSQL";
  /** A new, empty store. */
  fresh(retention?: HistoryRetention): Promise<FleetStore>;
  /** The store fresh() made last, opened again. */
  reopen(retention?: HistoryRetention): Promise<FleetStore>;
}

let lastUrl = "";
const BACKENDS: Backend[] = [
  {
    name: "SQLite",
    fresh: async (retention) => new SqliteFleetStore(join(dir, "fleet.db"), retention ? { retention } : {}),
    reopen: async (retention) => new SqliteFleetStore(join(dir, "fleet.db"), retention ? { retention } : {}),
  },
  {
    name: "PostgreSQL",
    fresh: async (retention) => {
      postgres ??= await startPostgres("fleet-store");
      lastUrl = await postgres.createDatabase(`store_${++databases}`);
      return PostgresFleetStore.open(lastUrl, retention ? { retention } : {});
    },
    reopen: (retention) => PostgresFleetStore.open(lastUrl, retention ? { retention } : {}),
  },
];

afterAll(async () => {
  await postgres?.remove();
}, 30_000);

describe.each(BACKENDS)("the fleet store on $name", (backend) => {
  const t0 = new Date("2026-11-21T12:00:00Z");
  const later = (s: number) => new Date(t0.getTime() + s * 1000);
  const report = (counter: number, extra: Partial<Report> = {}): Report => ({ deviceId: "dev-1", counter, sent: t0.toISOString(), state: "healthy", ...extra });

  beforeEach(async () => {
    dir = await makeTempDir("store");
    store = await backend.fresh();
  }, 60_000);
  afterEach(async () => {
    await store.close();
    await removeTree(dir);
  });

  describe("devices and rollouts", () => {
    it("enrolls an unknown device as pending once, then accepts it", async () => {
      expect(await store.enrollPending("dev-1", "KEY", t0)).toMatchObject({ id: "dev-1", enrollment: "pending", publicKey: "KEY", online: false });
      expect((await store.enrollPending("dev-1", "OTHER", later(1))).publicKey).toBe("KEY");
      expect((await store.acceptDevice("dev-1", later(2))).enrollment).toBe("accepted");
      expect((await store.deviceEvents("dev-1", 10)).map((e) => e.kind)).toEqual(["accepted", "enrolled"]);
    });

    it("refuses to accept a device it does not know", async () => {
      await expect(store.acceptDevice("ghost", t0)).rejects.toThrow(DeviceNotFoundError);
    });

    it("stores reports: state, booted deployment, counter and history", async () => {
      await store.enrollPending("dev-1", "KEY", t0);
      await store.recordReport(report(1, { state: "downloading", architecture: "amd64", groups: ["lab"], progress: { bytes: 10, total: 100 } }), later(1));
      await store.recordReport(report(2, { booted: { commit: "b".repeat(64), version: "2" }, staged: null }), later(2));
      const device = (await store.getDevice("dev-1"))!;
      // What a device says about its groups is kept apart: the operator assigns the groups rollouts select.
      expect(device).toMatchObject({ state: "healthy", lastCounter: 2, architecture: "amd64", groups: [], reportedGroups: ["lab"], booted: { version: "2" }, staged: null, online: true, lastSeen: later(2).toISOString() });
      const history = (await store.deviceEvents("dev-1", 10)).filter((e) => e.kind === "report");
      expect(history.map((e) => e.report!.counter)).toEqual([2, 1]);
      expect(history[1]!.report!.progress).toEqual({ bytes: 10, total: 100 });
    });

    it("takes a storm of writes at once, each standing alone: one that fails undoes nothing of the others", async () => {
      // SQLite writes these in one group commit (a savepoint each); PostgreSQL, a transaction each.
      const ids = Array.from({ length: 200 }, (_, i) => `storm-${i}`);
      const enrolled = await Promise.allSettled([...ids.map((id) => store.enrollPending(id, `KEY-${id}`, t0)), store.acceptDevice("ghost", t0), ...ids.map((id) => store.setOnline(id, true, later(1)))]);
      expect(enrolled.filter((r) => r.status === "rejected").map((r) => ((r as PromiseRejectedResult).reason as Error).message)).toEqual(["no device 'ghost'"]);
      expect(await store.countDevices("pending")).toBe(200);
      expect((await store.deviceCounts()).online).toBe(200);
      expect((await store.deviceEvents("storm-7", 10)).map((e) => e.kind)).toEqual(["online", "enrolled"]);
    });

    it("takes a report only over a lower stored counter, and nothing for a device it does not know", async () => {
      await store.enrollPending("dev-1", "KEY", t0);
      expect(await store.recordReport(report(5, { state: "downloading" }), later(1))).toBe(true);
      // The same counter again (a second instance or a racing copy took it first), and a lower one.
      expect(await store.recordReport(report(5, { state: "failed" }), later(2))).toBe(false);
      expect(await store.recordReport(report(4, { state: "failed" }), later(3))).toBe(false);
      expect(await store.getDevice("dev-1")).toMatchObject({ state: "downloading", lastCounter: 5, lastSeen: later(1).toISOString() });
      expect((await store.deviceEvents("dev-1", 10)).filter((e) => e.kind === "report")).toHaveLength(1);
      expect(await store.recordReport({ ...report(1), deviceId: "ghost" }, later(4))).toBe(false);
    });

    it("stores the pending and rollback deployments a report names, and keeps them when a report omits them", async () => {
      await store.enrollPending("dev-1", "KEY", t0);
      const v1 = { commit: "1".repeat(64), version: "1" };
      const v2 = { commit: "2".repeat(64), version: "2" };
      await store.recordReport(report(1, { state: "staged", booted: v1, staged: v2, pending: v2, rollback: null }), later(1));
      expect(await store.getDevice("dev-1")).toMatchObject({ booted: v1, staged: v2, pending: v2, rollback: null });
      await store.recordReport(report(2, { state: "rebooting" }), later(2));
      expect(await store.getDevice("dev-1")).toMatchObject({ pending: v2 });
      await store.recordReport(report(3, { state: "healthy", booted: v2, staged: null, pending: null, rollback: v1 }), later(3));
      expect(await store.getDevice("dev-1")).toMatchObject({ booted: v2, staged: null, pending: null, rollback: v1 });
    });

    it("marks a device offline and keeps that in the history", async () => {
      await store.enrollPending("dev-1", "KEY", t0);
      await store.setOnline("dev-1", true, later(1));
      await store.setOnline("dev-1", false, later(2));
      expect((await store.getDevice("dev-1"))!.online).toBe(false);
      expect((await store.deviceEvents("dev-1", 2)).map((e) => e.kind)).toEqual(["offline", "online"]);
    });

    it("writes nothing when a device is said to be online again", async () => {
      await store.enrollPending("dev-1", "KEY", t0);
      expect(await store.setOnline("dev-1", true, later(1))).toBe(true);
      expect(await store.setOnline("dev-1", true, later(2))).toBe(false);
      expect(await store.setOnline("ghost", true, later(2))).toBe(false);
      expect((await store.getDevice("dev-1"))!.lastSeen).toBe(later(1).toISOString());
      expect((await store.deviceEvents("dev-1", 10)).map((e) => e.kind)).toEqual(["online", "enrolled"]);
    });

    it("counts devices by enrollment, online, state and version with aggregate queries", async () => {
      for (const id of ["p-1", "p-2", "p-3"]) await store.enrollPending(id, "KEY", t0);
      for (const [id, state, version] of [["a-1", "healthy", "2"], ["a-2", "healthy", "2"], ["a-3", "failed", "1"]] as const) {
        await store.enrollPending(id, "KEY", t0);
        await store.acceptDevice(id, t0);
        await store.recordReport({ ...report(1, { state, booted: { commit: "a".repeat(64), version } }), deviceId: id }, later(1));
      }
      await store.enrollPending("a-4", "KEY", t0);
      await store.acceptDevice("a-4", t0);
      await store.setOnline("a-3", false, later(2));
      await store.enrollPending("r-1", "KEY", t0);
      await store.rejectDevice("r-1", t0);
      expect(await store.deviceCounts()).toEqual({
        devices: 8,
        online: 2,
        byEnrollment: { pending: 3, preauthorized: 0, accepted: 4, rejected: 1, revoked: 0 },
        byState: { healthy: 2, failed: 1, unknown: 1 },
        byVersion: { "2": 2, "1": 1, unknown: 1 },
      });
      expect(await store.countDevices("pending")).toBe(3);
      expect((await store.listDevices("rejected")).map((d) => d.id)).toEqual(["r-1"]);
    });

    it("rejects a device: kept with its key and offline, not pending again, accepted only by an operator", async () => {
      await store.enrollPending("dev-1", "KEY", t0);
      await store.acceptDevice("dev-1", t0);
      await store.setOnline("dev-1", true, later(1));
      expect(await store.rejectDevice("dev-1", later(2))).toMatchObject({ enrollment: "rejected", publicKey: "KEY", online: false });
      expect(await store.enrollPending("dev-1", "OTHER", later(3))).toMatchObject({ enrollment: "rejected", publicKey: "KEY" });
      expect((await store.deviceEvents("dev-1", 1)).map((e) => e.kind)).toEqual(["rejected"]);
      await expect(store.rejectDevice("ghost", t0)).rejects.toThrow(DeviceNotFoundError);
      expect((await store.acceptDevice("dev-1", later(4))).enrollment).toBe("accepted");
    });

    it("deletes a device with its history and rollout memberships, and a later enrollment starts afresh", async () => {
      await store.enrollPending("dev-1", "KEY", t0);
      await store.acceptDevice("dev-1", t0);
      await store.recordReport(report(7), later(1));
      await store.createRollout(
        { id: "r-1", ref: "x", channel: "stable", version: "2", commit: "c".repeat(64), selector: { groups: [], tags: [], devices: ["dev-1"] }, plan: { waves: [100], waveDelaySeconds: 0, waveTimeoutSeconds: 60, maxFailuresPercent: 0 }, progress: { state: "running", currentWave: 0, waveStartedAt: t0.toISOString(), waveCompletedAt: null }, pauseReason: null, createdAt: t0.toISOString(), updatedAt: t0.toISOString() },
        [{ deviceId: "dev-1", wave: 0 }],
      );
      expect(await store.deleteDevice("dev-1")).toMatchObject({ id: "dev-1", lastCounter: 7 });
      expect(await store.getDevice("dev-1")).toBeNull();
      expect(await store.deviceEvents("dev-1", 10)).toEqual([]);
      expect(await store.rolloutDevices("r-1")).toEqual([]);
      expect((await store.deviceCounts()).devices).toBe(0);
      await expect(store.deleteDevice("dev-1")).rejects.toThrow(DeviceNotFoundError);
      expect(await store.enrollPending("dev-1", "NEW", later(2))).toMatchObject({ enrollment: "pending", publicKey: "NEW", lastCounter: null });
    });

    it("reads a rollout's members with their online flag, and one member by id", async () => {
      for (const id of ["dev-1", "dev-2"]) {
        await store.enrollPending(id, "KEY", t0);
        await store.acceptDevice(id, t0);
      }
      await store.setOnline("dev-2", true, t0);
      await store.createRollout(
        { id: "r-1", ref: "x", channel: "stable", version: "2", commit: "c".repeat(64), selector: { groups: [], tags: [], devices: ["dev-1", "dev-2"] }, plan: { waves: [100], waveDelaySeconds: 0, waveTimeoutSeconds: 60, maxFailuresPercent: 0 }, progress: { state: "running", currentWave: 0, waveStartedAt: t0.toISOString(), waveCompletedAt: null }, pauseReason: null, createdAt: t0.toISOString(), updatedAt: t0.toISOString() },
        [{ deviceId: "dev-1", wave: 0 }, { deviceId: "dev-2", wave: 0 }],
      );
      await store.setRolloutDeviceStatus("r-1", "dev-2", "healthy", null, later(1));
      expect(await store.rolloutMembers("r-1")).toEqual([{ deviceId: "dev-1", wave: 0, status: "pending", online: false }, { deviceId: "dev-2", wave: 0, status: "healthy", online: true }]);
      expect(await store.rolloutDevice("r-1", "dev-2")).toMatchObject({ status: "healthy" });
      expect(await store.rolloutDevice("r-1", "ghost")).toBeNull();
      expect(await store.rolloutStatusCounts()).toEqual(new Map([["r-1", new Map([["pending", 1], ["healthy", 1]])]]));
      expect((await store.listRollouts("running")).map((r) => r.id)).toEqual(["r-1"]);
      expect(await store.listRollouts("completed")).toEqual([]);
    });

    it("keeps everything across a reopen", async () => {
      await store.enrollPending("dev-1", "KEY", t0);
      await store.acceptDevice("dev-1", t0);
      await store.recordReport(report(5), later(1));
      await store.close();
      store = await backend.reopen();
      expect(await store.getDevice("dev-1")).toMatchObject({ enrollment: "accepted", lastCounter: 5 });
      expect((await store.listDevices()).map((d) => d.id)).toEqual(["dev-1"]);
    });
  });

  describe("enrollment by the operator: preauthorize, revoke, rekey, groups", () => {
    it("preauthorizes a device with its key and groups, replacing a pending record under that id", async () => {
      await store.enrollPending("dev-1", "STRANGER", t0);
      const device = await store.preauthorizeDevice("dev-1", "KEY", ["lab", "eu", "lab"], later(1));
      expect(device).toMatchObject({ enrollment: "preauthorized", publicKey: "KEY", groups: ["eu", "lab"], reportedGroups: [] });
      expect((await store.deviceEvents("dev-1", 10)).map((e) => e.kind)).toEqual(["preauthorized", "enrolled"]);
    });

    it("revokes a device: its record says revoked, offline, and its key is barred", async () => {
      await store.enrollPending("dev-1", "KEY", t0);
      await store.acceptDevice("dev-1", t0);
      await store.setOnline("dev-1", true, t0);
      expect(await store.revokeDevice("dev-1", later(1))).toMatchObject({ enrollment: "revoked", online: false });
      expect(await store.revokedKey("KEY")).toEqual({ publicKey: "KEY", deviceId: "dev-1", revokedAt: later(1).toISOString(), reason: "revoked" });
      expect(await store.revokedKey("OTHER")).toBeNull();
      await expect(store.revokeDevice("ghost", t0)).rejects.toThrow(DeviceNotFoundError);
    });

    it("rekeys a device: new key, accepted, counter reset, old key barred (a barred key stays barred after delete)", async () => {
      await store.enrollPending("dev-1", "OLD", t0);
      await store.acceptDevice("dev-1", t0);
      await store.recordReport(report(7), later(1));
      await store.revokeDevice("dev-1", later(2));
      expect(await store.rekeyDevice("dev-1", "NEW", later(3))).toMatchObject({ publicKey: "NEW", enrollment: "accepted", lastCounter: null });
      expect((await store.revokedKey("OLD"))?.reason).toBe("revoked");
      await store.rekeyDevice("dev-1", "NEWER", later(4));
      expect(await store.revokedKey("NEW")).toMatchObject({ deviceId: "dev-1", reason: "rekeyed" });
      await store.deleteDevice("dev-1");
      expect(await store.revokedKey("NEW")).not.toBeNull();
    });

    it("keeps a preauthorized device preauthorized when it is rekeyed", async () => {
      await store.preauthorizeDevice("dev-1", "KEY", [], t0);
      expect((await store.rekeyDevice("dev-1", "KEY2", t0)).enrollment).toBe("preauthorized");
    });

    it("sets the operator's groups, which reports do not change", async () => {
      await store.enrollPending("dev-1", "KEY", t0);
      await store.setDeviceGroups("dev-1", ["canary"], t0);
      await store.recordReport(report(1, { groups: ["prod"] }), later(1));
      expect(await store.getDevice("dev-1")).toMatchObject({ groups: ["canary"], reportedGroups: ["prod"] });
      await expect(store.setDeviceGroups("ghost", [], t0)).rejects.toThrow(DeviceNotFoundError);
    });

    it.runIf(backend.name === "SQLite")("keeps the order writes were issued in: a report queued for the group commit lands before a rekey issued after it", async () => {
      await store.enrollPending("dev-1", "OLD", t0);
      await store.acceptDevice("dev-1", t0);
      const queued = store.recordReport(report(500), later(1));
      await store.rekeyDevice("dev-1", "NEW", later(2));
      expect(await queued).toBe(true);
      // The new key's counter starts again: the old key's report did not land after the rekey.
      expect(await store.getDevice("dev-1")).toMatchObject({ publicKey: "NEW", lastCounter: null, online: false });
    });

    it.runIf(backend.name === "SQLite")("fails a whole group commit with the disk's own error when the database cannot grow, storing none of it", async () => {
      await store.enrollPending("before", "KEY", t0);
      // No page more than it has now: the next writes that need room fail as on a full disk.
      const db = (store as unknown as { db: Database.Database }).db;
      db.pragma(`max_page_count = ${db.pragma("page_count", { simple: true }) as number}`);
      const big = "K".repeat(4000);
      const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => store.enrollPending(`full-${i}`, `${big}${i}`, later(1))));
      expect(results.every((r) => r.status === "rejected" && /full/i.test(String((r.reason as Error).message)))).toBe(true);
      db.pragma("max_page_count = 1073741823");
      expect((await store.listDevices()).map((d) => d.id)).toEqual(["before"]);
    });

    it.runIf(backend.name === "SQLite")("migrates a version-4 store: reported groups move aside, no device is in a group, history and memberships stay", async () => {
      await store.close();
      const path = join(dir, "v4.db");
      const old = new Database(path);
      for (const [i, migration] of MIGRATIONS.slice(0, 4).entries()) {
        old.exec(migration);
        old.pragma(`user_version = ${i + 1}`);
      }
      old.prepare("INSERT INTO devices (id, public_key, enrollment, groups_json, enrolled_at) VALUES ('dev-1', 'KEY', 'accepted', '[\"prod\"]', ?)").run(t0.toISOString());
      old.prepare("INSERT INTO device_events (device_id, at, kind) VALUES ('dev-1', ?, 'accepted')").run(t0.toISOString());
      old.prepare("INSERT INTO rollouts VALUES ('r-1', 'a/b', 'stable', '2', ?, '{}', '{}', '{\"state\":\"running\"}', NULL, ?, ?)").run("c".repeat(64), t0.toISOString(), t0.toISOString());
      old.prepare("INSERT INTO rollout_devices (rollout_id, device_id, wave, status, updated_at) VALUES ('r-1', 'dev-1', 0, 'pending', ?)").run(t0.toISOString());
      old.close();
      store = new SqliteFleetStore(path);
      expect(await store.getDevice("dev-1")).toMatchObject({ enrollment: "accepted", groups: [], reportedGroups: ["prod"] });
      expect((await store.deviceEvents("dev-1", 10)).map((e) => e.kind)).toEqual(["accepted"]);
      expect((await store.rolloutDevices("r-1")).map((m) => m.deviceId)).toEqual(["dev-1"]);
      expect((await store.revokeDevice("dev-1", t0)).enrollment).toBe("revoked");
    });
  });

  describe("device history retention", () => {
    const reopen = async (retention: HistoryRetention) => {
      await store.close();
      store = await backend.reopen(retention);
    };

    it("keeps each device's newest events up to the configured count", async () => {
      await reopen({ maxEventsPerDevice: 5, maxAgeDays: 90 });
      for (const id of ["dev-1", "dev-2"]) {
        await store.enrollPending(id, "KEY", t0);
        await store.acceptDevice(id, t0);
      }
      for (let counter = 1; counter <= 50; counter++) await store.recordReport(report(counter), later(counter));
      const kept = await store.deviceEvents("dev-1", 100);
      expect(kept.map((e) => e.report?.counter)).toEqual([50, 49, 48, 47, 46]);
      expect((await store.deviceEvents("dev-2", 100)).map((e) => e.kind)).toEqual(["accepted", "enrolled"]);
    });

    it("drops events older than the configured age, whichever device they belong to", async () => {
      await reopen({ maxEventsPerDevice: 1000, maxAgeDays: 2 });
      const day = (n: number) => new Date(t0.getTime() + n * 86_400_000);
      await store.enrollPending("old", "KEY", day(0));
      await store.enrollPending("dev-1", "KEY", day(0));
      await store.acceptDevice("dev-1", day(1));
      expect(await store.deviceEvents("old", 10)).toHaveLength(1);
      await store.recordReport(report(1), day(3));
      // At that write (SQLite) or just after it, on a connection of its own (PostgreSQL).
      await until(async () => (await store.deviceEvents("old", 10)).length === 0, "the old device's history gone", 5_000);
      expect((await store.deviceEvents("dev-1", 10)).map((e) => e.kind)).toEqual(["report", "accepted"]);
      expect(await store.getDevice("old")).not.toBeNull();
    });
  });
});

describe("the PostgreSQL store at start", () => {
  it("fails with E_STORE_OPEN and the URL without its password when the server cannot be reached", async () => {
    const port = await freePort();
    const opening = PostgresFleetStore.open(`postgres://fleet:s3cret@127.0.0.1:${port}/fleet`);
    await expect(opening).rejects.toMatchObject({ code: "E_STORE_OPEN", message: expect.stringContaining(`postgres://fleet:***@127.0.0.1:${port}/fleet`) });
    await expect(opening).rejects.not.toMatchObject({ message: expect.stringContaining("s3cret") });
  });
});

describe("PostgreSQL restarting under the server", () => {
  const t0 = new Date("2026-11-21T12:00:00Z");
  const later = (s: number) => new Date(t0.getTime() + s * 1000);
  const report = (counter: number): Report => ({ deviceId: "dev-1", counter, sent: t0.toISOString(), state: "healthy" });

  it("fails the store's calls meanwhile without ending the process, then works again; the rollout lease is lost and taken again", async () => {
    postgres ??= await startPostgres("fleet-store");
    const url = await postgres.createDatabase("restart");
    const store = await PostgresFleetStore.open(url);
    const coordination = new PostgresCoordination(url, silentLogger());
    try {
      await store.enrollPending("dev-1", "KEY", t0);
      await store.acceptDevice("dev-1", t0);
      expect(await coordination.isLeader()).toBe(true);
      expect(coordination.epoch).toBe(1);
      // Writes and a held step lock in flight while the server shuts down (terminating every session) and starts again.
      let failures = 0;
      const writes = (async () => {
        for (let counter = 1; counter <= 400; counter++) await store.recordReport(report(counter), later(counter)).catch(() => failures++);
      })();
      const stepLock = coordination.withRolloutLock(() => new Promise((resolve) => setTimeout(resolve, 300))).catch(() => "failed");
      await new Promise((resolve) => setTimeout(resolve, 100));
      await postgres.stop();
      await postgres.start();
      await writes;
      await stepLock;
      expect(failures).toBeGreaterThan(0);
      expect(await store.recordReport(report(1000), later(1000))).toBe(true);
      expect(await store.getDevice("dev-1")).toMatchObject({ lastCounter: 1000 });
      // The lease's session ended with the server: lost, then taken again (a new epoch: the engine takes over again).
      await until(() => coordination.isLeader(), "the lease taken again", 30_000);
      expect(coordination.epoch).toBe(2);
      expect(await coordination.withRolloutLock(async () => "held")).toBe("held");
    } finally {
      await coordination.close();
      await store.close();
    }
  }, 90_000);
});
