/** FleetStore on SQLite (better-sqlite3, WAL): one file under the server's data dir. */
import Database from "better-sqlite3";
import { AptOstreeError } from "../../shared/errors.ts";
import type { Report } from "../../shared/wire/report.ts";
import { type DeviceCounts, type DeviceEvent, type DeviceRecord, type EnrollmentState, type FleetStore, type HistoryRetention, type RevokedKey, type RolloutDeviceRecord, type RolloutRecord } from "./store.ts";
import type { RolloutDeviceStatus, RolloutMember, RolloutProgress, RolloutState } from "./waves.ts";
import { MIGRATIONS } from "./store-sqlite-schema.ts";
import { DEFAULT_RETENTION, DeviceNotFoundError, sortedSet, toDeviceCounts, toRecord, toRollout, toRolloutDevice, toStatusCounts, type DeviceRow, type RolloutDeviceRow, type RolloutRow } from "./store-rows.ts";

export { DEFAULT_RETENTION, DeviceNotFoundError };


/** History older than the retention age is removed at most this often, at most this many events at a time. */
const AGE_PRUNE_INTERVAL_MS = 60_000;
const AGE_PRUNE_BATCH = 10_000;
/** Writes in one group commit at most. */
const GROUP_MAX = 1000;


export interface SqliteFleetStoreOptions {
  /** How much device history to keep (DEFAULT_RETENTION when omitted). */
  retention?: HistoryRetention;
  /** Group commit of the storm writes (default true); off: one transaction each (the benchmark's baseline). */
  groupCommit?: boolean;
}

export class SqliteFleetStore implements FleetStore {
  private readonly db: Database.Database;
  private readonly retention: HistoryRetention;
  private lastAgePrune = Number.NEGATIVE_INFINITY;
  private readonly groupCommit: boolean;
  private readonly queued: Array<{ write: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void }> = [];

  constructor(path: string, options: SqliteFleetStoreOptions = {}) {
    this.retention = options.retention ?? DEFAULT_RETENTION;
    this.groupCommit = options.groupCommit ?? true;
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    // Migrations that rebuild a table run with foreign keys off (better-sqlite3 turns them on by
    // default; the pragma cannot change inside a transaction).
    this.db.pragma("foreign_keys = OFF");
    this.migrate();
    this.db.pragma("foreign_keys = ON");
  }

  async getDevice(id: string): Promise<DeviceRecord | null> {
    return this.readDevice(id);
  }

  private readDevice(id: string): DeviceRecord | null {
    const row = this.db.prepare("SELECT * FROM devices WHERE id = ?").get(id) as DeviceRow | undefined;
    return row ? toRecord(row) : null;
  }

  async listDevices(enrollment?: EnrollmentState): Promise<DeviceRecord[]> {
    const rows = enrollment === undefined ? this.db.prepare("SELECT * FROM devices ORDER BY id").all() : this.db.prepare("SELECT * FROM devices WHERE enrollment = ? ORDER BY id").all(enrollment);
    return (rows as DeviceRow[]).map(toRecord);
  }

  async deviceCounts(): Promise<DeviceCounts> {
    type KeyCount = { key: string | null; n: number };
    return toDeviceCounts(
      this.db.prepare("SELECT enrollment, COUNT(*) AS n, SUM(online) AS online FROM devices GROUP BY enrollment").all() as Array<{ enrollment: EnrollmentState; n: number; online: number }>,
      this.db.prepare("SELECT state AS key, COUNT(*) AS n FROM devices WHERE enrollment = 'accepted' GROUP BY state").all() as KeyCount[],
      this.db.prepare("SELECT json_extract(booted_json, '$.version') AS key, COUNT(*) AS n FROM devices WHERE enrollment = 'accepted' GROUP BY json_extract(booted_json, '$.version')").all() as KeyCount[],
    );
  }

  async countDevices(enrollment?: EnrollmentState): Promise<number> {
    const row = enrollment === undefined ? this.db.prepare("SELECT COUNT(*) AS n FROM devices").get() : this.db.prepare("SELECT COUNT(*) AS n FROM devices WHERE enrollment = ?").get(enrollment);
    return (row as { n: number }).n;
  }

  enrollPending(id: string, publicKey: string, now: Date): Promise<DeviceRecord> {
    return this.grouped(() => {
      this.db.transaction(() => {
        const inserted = this.db
          .prepare("INSERT OR IGNORE INTO devices (id, public_key, enrollment, enrolled_at) VALUES (?, ?, 'pending', ?)")
          .run(id, publicKey, now.toISOString());
        if (inserted.changes > 0) this.addEvent(id, now, "enrolled", null);
      })();
      return this.readDevice(id)!;
    });
  }

  async preauthorizeDevice(id: string, publicKey: string, groups: string[], now: Date): Promise<DeviceRecord> {
    this.commitQueued();
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO devices (id, public_key, enrollment, groups_json, enrolled_at) VALUES (@id, @key, 'preauthorized', @groups, @now)
           ON CONFLICT(id) DO UPDATE SET public_key = @key, enrollment = 'preauthorized', groups_json = @groups, online = 0, last_counter = NULL`,
        )
        .run({ id, key: publicKey, groups: JSON.stringify(sortedSet(groups)), now: now.toISOString() });
      this.addEvent(id, now, "preauthorized", null);
    })();
    return this.readDevice(id)!;
  }

  acceptDevice(id: string, now: Date): Promise<DeviceRecord> {
    return this.grouped(() => {
      this.db.transaction(() => {
        const updated = this.db.prepare("UPDATE devices SET enrollment = 'accepted' WHERE id = ?").run(id);
        if (updated.changes === 0) throw new DeviceNotFoundError(id);
        this.addEvent(id, now, "accepted", null);
      })();
      return this.readDevice(id)!;
    });
  }

  async rejectDevice(id: string, now: Date): Promise<DeviceRecord> {
    this.commitQueued();
    this.db.transaction(() => {
      const updated = this.db.prepare("UPDATE devices SET enrollment = 'rejected', online = 0 WHERE id = ?").run(id);
      if (updated.changes === 0) throw new DeviceNotFoundError(id);
      this.addEvent(id, now, "rejected", null);
    })();
    return this.readDevice(id)!;
  }

  async revokeDevice(id: string, now: Date): Promise<DeviceRecord> {
    this.commitQueued();
    this.db.transaction(() => {
      const device = this.readDevice(id);
      if (!device) throw new DeviceNotFoundError(id);
      this.barKey(device.publicKey, id, now, "revoked");
      this.db.prepare("UPDATE devices SET enrollment = 'revoked', online = 0 WHERE id = ?").run(id);
      this.addEvent(id, now, "revoked", null);
    })();
    return this.readDevice(id)!;
  }

  async rekeyDevice(id: string, publicKey: string, now: Date): Promise<DeviceRecord> {
    this.commitQueued();
    this.db.transaction(() => {
      const device = this.readDevice(id);
      if (!device) throw new DeviceNotFoundError(id);
      this.barKey(device.publicKey, id, now, "rekeyed");
      // A new key is new storage: its report counter starts again.
      this.db
        .prepare("UPDATE devices SET public_key = ?, enrollment = CASE enrollment WHEN 'preauthorized' THEN 'preauthorized' ELSE 'accepted' END, online = 0, last_counter = NULL WHERE id = ?")
        .run(publicKey, id);
      this.addEvent(id, now, "rekeyed", null);
    })();
    return this.readDevice(id)!;
  }

  async revokedKey(publicKey: string): Promise<RevokedKey | null> {
    const row = this.db.prepare("SELECT * FROM revoked_keys WHERE public_key = ?").get(publicKey) as { public_key: string; device_id: string; revoked_at: string; reason: RevokedKey["reason"] } | undefined;
    return row ? { publicKey: row.public_key, deviceId: row.device_id, revokedAt: row.revoked_at, reason: row.reason } : null;
  }

  async deleteDevice(id: string): Promise<DeviceRecord> {
    this.commitQueued();
    const device = this.readDevice(id);
    if (!device) throw new DeviceNotFoundError(id);
    this.db.transaction(() => {
      this.db.prepare("DELETE FROM device_events WHERE device_id = ?").run(id);
      this.db.prepare("DELETE FROM rollout_devices WHERE device_id = ?").run(id);
      this.db.prepare("DELETE FROM devices WHERE id = ?").run(id);
    })();
    return device;
  }

  async setDeviceTags(id: string, tags: string[]): Promise<DeviceRecord> {
    this.commitQueued();
    const updated = this.db.prepare("UPDATE devices SET tags_json = ? WHERE id = ?").run(JSON.stringify(sortedSet(tags)), id);
    if (updated.changes === 0) throw new DeviceNotFoundError(id);
    return this.readDevice(id)!;
  }

  async setDeviceGroups(id: string, groups: string[], now: Date): Promise<DeviceRecord> {
    this.commitQueued();
    this.db.transaction(() => {
      const updated = this.db.prepare("UPDATE devices SET groups_json = ? WHERE id = ?").run(JSON.stringify(sortedSet(groups)), id);
      if (updated.changes === 0) throw new DeviceNotFoundError(id);
      this.addEvent(id, now, "groups", null);
    })();
    return this.readDevice(id)!;
  }

  recordReport(report: Report, now: Date): Promise<boolean> {
    return this.grouped(() => {
      return this.db.transaction(() => {
        const json = (value: unknown) => (value === undefined ? undefined : value === null ? null : JSON.stringify(value));
        const updated = this.db
          .prepare(
            `UPDATE devices SET state = @state, last_counter = @counter, last_seen = @now, online = 1,
               architecture = COALESCE(@architecture, architecture), agent_version = COALESCE(@agentVersion, agent_version),
               reported_groups_json = COALESCE(@groups, reported_groups_json),
               booted_json = COALESCE(@booted, booted_json),
               staged_json = CASE WHEN @stagedGiven THEN @staged ELSE staged_json END,
               pending_json = CASE WHEN @pendingGiven THEN @pending ELSE pending_json END,
               rollback_json = CASE WHEN @rollbackGiven THEN @rollback ELSE rollback_json END
             WHERE id = @id AND (last_counter IS NULL OR last_counter < @counter)`,
          )
          .run({
            id: report.deviceId,
            state: report.state,
            counter: report.counter,
            now: now.toISOString(),
            architecture: report.architecture ?? null,
            agentVersion: report.agentVersion ?? null,
            groups: json(report.groups) ?? null,
            booted: json(report.booted) ?? null,
            stagedGiven: report.staged === undefined ? 0 : 1,
            staged: json(report.staged) ?? null,
            pendingGiven: report.pending === undefined ? 0 : 1,
            pending: json(report.pending) ?? null,
            rollbackGiven: report.rollback === undefined ? 0 : 1,
            rollback: json(report.rollback) ?? null,
          });
        if (updated.changes === 0) return false;
        this.addEvent(report.deviceId, now, "report", report);
        return true;
      })();
    });
  }

  setOnline(id: string, online: boolean, now: Date): Promise<boolean> {
    return this.grouped(() => {
      return this.db.transaction(() => {
        const flag = online ? 1 : 0;
        const updated = this.db.prepare("UPDATE devices SET online = ?, last_seen = ? WHERE id = ? AND online != ?").run(flag, now.toISOString(), id, flag);
        if (updated.changes > 0) this.addEvent(id, now, online ? "online" : "offline", null);
        return updated.changes > 0;
      })();
    });
  }

  async deviceEvents(id: string, limit: number): Promise<DeviceEvent[]> {
    const rows = this.db.prepare("SELECT * FROM device_events WHERE device_id = ? ORDER BY id DESC LIMIT ?").all(id, limit) as Array<{
      id: number;
      device_id: string;
      at: string;
      kind: DeviceEvent["kind"];
      report_json: string | null;
    }>;
    return rows.map((row) => ({ id: row.id, deviceId: row.device_id, at: row.at, kind: row.kind, report: row.report_json ? (JSON.parse(row.report_json) as Report) : null }));
  }

  async createRollout(rollout: RolloutRecord, members: Array<{ deviceId: string; wave: number }>): Promise<void> {
    this.commitQueued();
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO rollouts (id, ref, channel, version, commit_id, selector_json, plan_json, progress_json, pause_reason, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(rollout.id, rollout.ref, rollout.channel, rollout.version, rollout.commit, JSON.stringify(rollout.selector), JSON.stringify(rollout.plan), JSON.stringify(rollout.progress), rollout.pauseReason, rollout.createdAt, rollout.updatedAt);
      const insert = this.db.prepare("INSERT INTO rollout_devices (rollout_id, device_id, wave, status, updated_at) VALUES (?, ?, ?, 'pending', ?)");
      for (const member of members) insert.run(rollout.id, member.deviceId, member.wave, rollout.createdAt);
    })();
  }

  async getRollout(id: string): Promise<RolloutRecord | null> {
    const row = this.db.prepare("SELECT * FROM rollouts WHERE id = ?").get(id) as RolloutRow | undefined;
    return row ? toRollout(row) : null;
  }

  async listRollouts(state?: RolloutState): Promise<RolloutRecord[]> {
    const rows = state === undefined
      ? this.db.prepare("SELECT * FROM rollouts ORDER BY created_at, id").all()
      : this.db.prepare("SELECT * FROM rollouts WHERE json_extract(progress_json, '$.state') = ? ORDER BY created_at, id").all(state);
    return (rows as RolloutRow[]).map(toRollout);
  }

  async updateRollout(id: string, progress: RolloutProgress, pauseReason: string | null, now: Date): Promise<void> {
    this.commitQueued();
    this.db.prepare("UPDATE rollouts SET progress_json = ?, pause_reason = ?, updated_at = ? WHERE id = ?").run(JSON.stringify(progress), pauseReason, now.toISOString(), id);
  }

  async rolloutDevices(id: string): Promise<RolloutDeviceRecord[]> {
    const rows = this.db.prepare("SELECT * FROM rollout_devices WHERE rollout_id = ? ORDER BY wave, device_id").all(id) as RolloutDeviceRow[];
    return rows.map(toRolloutDevice);
  }

  async rolloutDevice(rolloutId: string, deviceId: string): Promise<RolloutDeviceRecord | null> {
    const row = this.db.prepare("SELECT * FROM rollout_devices WHERE rollout_id = ? AND device_id = ?").get(rolloutId, deviceId) as RolloutDeviceRow | undefined;
    return row ? toRolloutDevice(row) : null;
  }

  async rolloutMembers(id: string): Promise<RolloutMember[]> {
    const rows = this.db
      .prepare("SELECT r.device_id, r.wave, r.status, d.online FROM rollout_devices r JOIN devices d ON d.id = r.device_id WHERE r.rollout_id = ? ORDER BY r.wave, r.device_id")
      .all(id) as Array<{ device_id: string; wave: number; status: RolloutDeviceStatus; online: number }>;
    return rows.map((row) => ({ deviceId: row.device_id, wave: row.wave, status: row.status, online: row.online === 1 }));
  }

  async rolloutStatusCounts(): Promise<Map<string, Map<RolloutDeviceStatus, number>>> {
    return toStatusCounts(this.db.prepare("SELECT rollout_id, status, COUNT(*) AS n FROM rollout_devices GROUP BY rollout_id, status").all() as Array<{ rollout_id: string; status: RolloutDeviceStatus; n: number }>);
  }

  async setRolloutDeviceStatus(rolloutId: string, deviceId: string, status: RolloutDeviceStatus, detail: string | null, now: Date): Promise<boolean> {
    this.commitQueued();
    const updated = this.db
      .prepare("UPDATE rollout_devices SET status = ?, detail = ?, updated_at = ? WHERE rollout_id = ? AND device_id = ? AND status NOT IN ('healthy', 'failed', 'rolled-back')")
      .run(status, detail, now.toISOString(), rolloutId, deviceId);
    return updated.changes > 0;
  }

  async markRolloutDevicesSent(rolloutId: string, deviceIds: string[], now: Date): Promise<void> {
    this.commitQueued();
    const mark = this.db.prepare("UPDATE rollout_devices SET status = 'sent', sent_at = ?, updated_at = ? WHERE rollout_id = ? AND device_id = ? AND status = 'pending'");
    this.db.transaction(() => {
      for (const deviceId of deviceIds) mark.run(now.toISOString(), now.toISOString(), rolloutId, deviceId);
    })();
  }

  async close(): Promise<void> {
    // What is queued is written first.
    this.commitQueued();
    this.db.close();
  }

  /**
   * Group commit: the writes that come in storms (enrollment, online flags, reports) are queued
   * and written together at the next turn of the event loop, in one durable transaction (one
   * fsync) instead of one each; each write is a savepoint of its own, so one that throws is
   * undone alone and only its caller sees the error. A caller's promise resolves once its write
   * is committed, so what it reads next includes it.
   */
  private grouped<T>(write: () => T): Promise<T> {
    if (!this.groupCommit) {
      try {
        return Promise.resolve(this.db.transaction(write)());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.queued.push({ write, resolve: resolve as (value: unknown) => void, reject });
      if (this.queued.length === 1) setImmediate(() => this.commitGroup());
    });
  }

  /**
   * Writes what is queued now: a write that is not grouped (reject, revoke, rekey, delete, the
   * rollout steps) must not overtake a grouped one issued before it (a report queued before a
   * rekey would otherwise land after it, under the new key).
   */
  private commitQueued(): void {
    while (this.queued.length > 0) this.commitGroup();
  }

  private commitGroup(): void {
    // At most GROUP_MAX at a time: a storm is several short transactions, not one that holds the loop.
    const group = this.queued.splice(0, GROUP_MAX);
    if (this.queued.length > 0) setImmediate(() => this.commitGroup());
    if (group.length === 0) return;
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      this.db.transaction(() => {
        for (const item of group) {
          try {
            outcomes.push({ ok: true, value: this.db.transaction(item.write)() });
          } catch (error) {
            // SQLite abandoned the whole transaction (disk full, I/O error): the group fails as one,
            // with the real error, and nothing after it runs outside a transaction.
            if (!this.db.inTransaction) throw error;
            outcomes.push({ ok: false, error });
          }
        }
      })();
    } catch (error) {
      // The commit itself failed (the disk): nothing of the group was written.
      for (const item of group) item.reject(error);
      return;
    }
    group.forEach((item, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }

  /** Appends to a device's history and keeps it within the retention: its newest N events, none older than the age. */
  private addEvent(id: string, now: Date, kind: DeviceEvent["kind"], report: Report | null): void {
    this.db.prepare("INSERT INTO device_events (device_id, at, kind, report_json) VALUES (?, ?, ?, ?)").run(id, now.toISOString(), kind, report ? JSON.stringify(report) : null);
    // One walk of this device's newest N index entries; nothing is deleted until it has more.
    this.db
      .prepare("DELETE FROM device_events WHERE device_id = @id AND id <= (SELECT id FROM device_events WHERE device_id = @id ORDER BY id DESC LIMIT 1 OFFSET @keep)")
      .run({ id, keep: this.retention.maxEventsPerDevice });
    if (now.getTime() - this.lastAgePrune >= AGE_PRUNE_INTERVAL_MS) {
      this.lastAgePrune = now.getTime();
      const cutoff = new Date(now.getTime() - this.retention.maxAgeDays * 86_400_000).toISOString();
      this.db.prepare("DELETE FROM device_events WHERE id IN (SELECT id FROM device_events WHERE at < ? ORDER BY at LIMIT ?)").run(cutoff, AGE_PRUNE_BATCH);
    }
  }

  /** Records a key as barred; the first reason stays (a key revoked, then its device rekeyed, stays 'revoked'). */
  private barKey(publicKey: string, deviceId: string, now: Date, reason: RevokedKey["reason"]): void {
    this.db.prepare("INSERT OR IGNORE INTO revoked_keys (public_key, device_id, revoked_at, reason) VALUES (?, ?, ?, ?)").run(publicKey, deviceId, now.toISOString(), reason);
  }

  /** Runs with foreign keys off (a migration may rebuild a referenced table); each checks them before it commits. */
  private migrate(): void {
    const version = this.db.pragma("user_version", { simple: true }) as number;
    for (let next = version; next < MIGRATIONS.length; next++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[next]!);
        const broken = this.db.pragma("foreign_key_check") as unknown[];
        if (broken.length > 0) throw new AptOstreeError("E_STORE_MIGRATION", `migration ${next + 1} would break ${broken.length} foreign key(s), e.g. ${JSON.stringify(broken[0])}; the store is left at version ${next}`);
        this.db.pragma(`user_version = ${next + 1}`);
      })();
    }
  }
}

