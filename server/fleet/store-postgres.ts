/**
 * FleetStore on PostgreSQL (node-postgres): the store several server instances share
 * (`serve --db postgres://...`). Same tables and semantics as the SQLite store; every write that
 * reads before it writes runs in one transaction with the rows it reads locked, so two instances
 * never both take the same enrollment, report counter or rollout step.
 */
import pg from "pg";
import { AptOstreeError } from "../../shared/errors.ts";
import type { Report } from "../../shared/wire/report.ts";
import { type DeviceCounts, type DeviceEvent, type DeviceRecord, type EnrollmentState, type FleetStore, type HistoryRetention, type RevokedKey, type RolloutDeviceRecord, type RolloutRecord } from "./store.ts";
import type { RolloutDeviceStatus, RolloutMember, RolloutProgress, RolloutState } from "./waves.ts";
import { PG_MIGRATIONS } from "./store-postgres-schema.ts";
import { createPool, withClient } from "./pg-connect.ts";
import { DEFAULT_RETENTION, DeviceNotFoundError, sortedSet, toDeviceCounts, toRecord, toRollout, toRolloutDevice, toStatusCounts, type DeviceRow, type RolloutDeviceRow, type RolloutRow } from "./store-rows.ts";

/** History older than the retention age is removed at most this often, at most this many events at a time. */
const AGE_PRUNE_INTERVAL_MS = 60_000;
const AGE_PRUNE_BATCH = 10_000;
/** pg_advisory_lock key held while migrating: instances starting together migrate one after the other. */
const MIGRATION_LOCK = 0x61707473; // "apts"

export interface PostgresFleetStoreOptions {
  retention?: HistoryRetention;
  /** Connections in the pool (default 10). */
  maxConnections?: number;
}

type Queryable = Pick<pg.PoolClient, "query">;

export class PostgresFleetStore implements FleetStore {
  private lastAgePrune = Number.NEGATIVE_INFINITY;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly retention: HistoryRetention,
  ) {}

  /** Connects, checks the server answers, and brings the schema up to date. */
  static async open(url: string, options: PostgresFleetStoreOptions = {}): Promise<PostgresFleetStore> {
    const pool = createPool(url, options.maxConnections ?? 10);
    const store = new PostgresFleetStore(pool, options.retention ?? DEFAULT_RETENTION);
    try {
      await store.migrate();
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw new AptOstreeError("E_STORE_OPEN", `cannot open the PostgreSQL store at ${redact(url)}: ${(error as Error).message}`, { cause: error });
    }
    return store;
  }

  async getDevice(id: string): Promise<DeviceRecord | null> {
    return this.readDevice(this.pool, id);
  }

  async listDevices(enrollment?: EnrollmentState): Promise<DeviceRecord[]> {
    const { rows } = enrollment === undefined ? await this.pool.query<DeviceRow>("SELECT * FROM devices ORDER BY id") : await this.pool.query<DeviceRow>("SELECT * FROM devices WHERE enrollment = $1 ORDER BY id", [enrollment]);
    return rows.map(toRecord);
  }

  async deviceCounts(): Promise<DeviceCounts> {
    type KeyCount = { key: string | null; n: number };
    const [byEnrollment, byState, byVersion] = await Promise.all([
      this.pool.query<{ enrollment: EnrollmentState; n: number; online: number }>("SELECT enrollment, COUNT(*) AS n, SUM(online)::bigint AS online FROM devices GROUP BY enrollment"),
      this.pool.query<KeyCount>("SELECT state AS key, COUNT(*) AS n FROM devices WHERE enrollment = 'accepted' GROUP BY state"),
      this.pool.query<KeyCount>("SELECT (booted_json::jsonb) ->> 'version' AS key, COUNT(*) AS n FROM devices WHERE enrollment = 'accepted' GROUP BY 1"),
    ]);
    return toDeviceCounts(byEnrollment.rows, byState.rows, byVersion.rows);
  }

  async countDevices(enrollment?: EnrollmentState): Promise<number> {
    const { rows } = enrollment === undefined ? await this.pool.query<{ n: number }>("SELECT COUNT(*) AS n FROM devices") : await this.pool.query<{ n: number }>("SELECT COUNT(*) AS n FROM devices WHERE enrollment = $1", [enrollment]);
    return rows[0]!.n;
  }

  async enrollPending(id: string, publicKey: string, now: Date): Promise<DeviceRecord> {
    return this.transaction(async (db) => {
      const inserted = await db.query("INSERT INTO devices (id, public_key, enrollment, enrolled_at) VALUES ($1, $2, 'pending', $3) ON CONFLICT (id) DO NOTHING", [id, publicKey, now.toISOString()]);
      if (inserted.rowCount) await this.addEvent(db, id, now, "enrolled", null);
      return (await this.readDevice(db, id))!;
    });
  }

  async preauthorizeDevice(id: string, publicKey: string, groups: string[], now: Date): Promise<DeviceRecord> {
    return this.transaction(async (db) => {
      await db.query(
        `INSERT INTO devices (id, public_key, enrollment, groups_json, enrolled_at) VALUES ($1, $2, 'preauthorized', $3, $4)
         ON CONFLICT (id) DO UPDATE SET public_key = $2, enrollment = 'preauthorized', groups_json = $3, online = 0, last_counter = NULL`,
        [id, publicKey, JSON.stringify(sortedSet(groups)), now.toISOString()],
      );
      await this.addEvent(db, id, now, "preauthorized", null);
      return (await this.readDevice(db, id))!;
    });
  }

  async acceptDevice(id: string, now: Date): Promise<DeviceRecord> {
    return this.setEnrollment(id, now, "accepted", "UPDATE devices SET enrollment = 'accepted' WHERE id = $1");
  }

  async rejectDevice(id: string, now: Date): Promise<DeviceRecord> {
    return this.setEnrollment(id, now, "rejected", "UPDATE devices SET enrollment = 'rejected', online = 0 WHERE id = $1");
  }

  async revokeDevice(id: string, now: Date): Promise<DeviceRecord> {
    return this.transaction(async (db) => {
      const device = await this.readDevice(db, id, true);
      if (!device) throw new DeviceNotFoundError(id);
      await this.barKey(db, device.publicKey, id, now, "revoked");
      await db.query("UPDATE devices SET enrollment = 'revoked', online = 0 WHERE id = $1", [id]);
      await this.addEvent(db, id, now, "revoked", null);
      return (await this.readDevice(db, id))!;
    });
  }

  async rekeyDevice(id: string, publicKey: string, now: Date): Promise<DeviceRecord> {
    return this.transaction(async (db) => {
      const device = await this.readDevice(db, id, true);
      if (!device) throw new DeviceNotFoundError(id);
      await this.barKey(db, device.publicKey, id, now, "rekeyed");
      // A new key is new storage: its report counter starts again.
      await db.query("UPDATE devices SET public_key = $1, enrollment = CASE enrollment WHEN 'preauthorized' THEN 'preauthorized' ELSE 'accepted' END, online = 0, last_counter = NULL WHERE id = $2", [publicKey, id]);
      await this.addEvent(db, id, now, "rekeyed", null);
      return (await this.readDevice(db, id))!;
    });
  }

  async revokedKey(publicKey: string): Promise<RevokedKey | null> {
    const { rows } = await this.pool.query<{ public_key: string; device_id: string; revoked_at: string; reason: RevokedKey["reason"] }>("SELECT * FROM revoked_keys WHERE public_key = $1", [publicKey]);
    const row = rows[0];
    return row ? { publicKey: row.public_key, deviceId: row.device_id, revokedAt: row.revoked_at, reason: row.reason } : null;
  }

  async deleteDevice(id: string): Promise<DeviceRecord> {
    return this.transaction(async (db) => {
      const device = await this.readDevice(db, id, true);
      if (!device) throw new DeviceNotFoundError(id);
      await db.query("DELETE FROM device_events WHERE device_id = $1", [id]);
      await db.query("DELETE FROM rollout_devices WHERE device_id = $1", [id]);
      await db.query("DELETE FROM devices WHERE id = $1", [id]);
      return device;
    });
  }

  async setDeviceTags(id: string, tags: string[]): Promise<DeviceRecord> {
    const updated = await this.pool.query<DeviceRow>("UPDATE devices SET tags_json = $1 WHERE id = $2 RETURNING *", [JSON.stringify(sortedSet(tags)), id]);
    if (!updated.rows[0]) throw new DeviceNotFoundError(id);
    return toRecord(updated.rows[0]);
  }

  async setDeviceGroups(id: string, groups: string[], now: Date): Promise<DeviceRecord> {
    return this.transaction(async (db) => {
      const updated = await db.query<DeviceRow>("UPDATE devices SET groups_json = $1 WHERE id = $2 RETURNING *", [JSON.stringify(sortedSet(groups)), id]);
      if (!updated.rows[0]) throw new DeviceNotFoundError(id);
      await this.addEvent(db, id, now, "groups", null);
      return toRecord(updated.rows[0]);
    });
  }

  async recordReport(report: Report, now: Date): Promise<boolean> {
    const json = (value: unknown) => (value === undefined || value === null ? null : JSON.stringify(value));
    return this.transaction(async (db) => {
      const updated = await db.query(
        `UPDATE devices SET state = $2, last_counter = $3, last_seen = $4, online = 1,
           architecture = COALESCE($5, architecture), agent_version = COALESCE($6, agent_version),
           reported_groups_json = COALESCE($7, reported_groups_json),
           booted_json = COALESCE($8, booted_json),
           staged_json = CASE WHEN $9 THEN $10 ELSE staged_json END,
           pending_json = CASE WHEN $11 THEN $12 ELSE pending_json END,
           rollback_json = CASE WHEN $13 THEN $14 ELSE rollback_json END
         WHERE id = $1 AND (last_counter IS NULL OR last_counter < $3)`,
        [
          report.deviceId,
          report.state,
          report.counter,
          now.toISOString(),
          report.architecture ?? null,
          report.agentVersion ?? null,
          json(report.groups),
          json(report.booted),
          report.staged !== undefined,
          json(report.staged),
          report.pending !== undefined,
          json(report.pending),
          report.rollback !== undefined,
          json(report.rollback),
        ],
      );
      if (!updated.rowCount) return false;
      await this.addEvent(db, report.deviceId, now, "report", report);
      return true;
    });
  }

  async setOnline(id: string, online: boolean, now: Date): Promise<boolean> {
    return this.transaction(async (db) => {
      const flag = online ? 1 : 0;
      const updated = await db.query("UPDATE devices SET online = $1, last_seen = $2 WHERE id = $3 AND online != $1", [flag, now.toISOString(), id]);
      if (!updated.rowCount) return false;
      await this.addEvent(db, id, now, online ? "online" : "offline", null);
      return true;
    });
  }

  async deviceEvents(id: string, limit: number): Promise<DeviceEvent[]> {
    const { rows } = await this.pool.query<{ id: number; device_id: string; at: string; kind: DeviceEvent["kind"]; report_json: string | null }>("SELECT * FROM device_events WHERE device_id = $1 ORDER BY id DESC LIMIT $2", [id, limit]);
    return rows.map((row) => ({ id: row.id, deviceId: row.device_id, at: row.at, kind: row.kind, report: row.report_json ? (JSON.parse(row.report_json) as Report) : null }));
  }

  async createRollout(rollout: RolloutRecord, members: Array<{ deviceId: string; wave: number }>): Promise<void> {
    await this.transaction(async (db) => {
      await db.query(
        `INSERT INTO rollouts (id, ref, channel, version, commit_id, selector_json, plan_json, progress_json, pause_reason, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [rollout.id, rollout.ref, rollout.channel, rollout.version, rollout.commit, JSON.stringify(rollout.selector), JSON.stringify(rollout.plan), JSON.stringify(rollout.progress), rollout.pauseReason, rollout.createdAt, rollout.updatedAt],
      );
      // One statement per few thousand members, not one round trip each.
      for (let start = 0; start < members.length; start += 5000) {
        const batch = members.slice(start, start + 5000);
        await db.query(
          "INSERT INTO rollout_devices (rollout_id, device_id, wave, status, updated_at) SELECT $1, d, w, 'pending', $2 FROM unnest($3::text[], $4::int[]) AS m(d, w)",
          [rollout.id, rollout.createdAt, batch.map((m) => m.deviceId), batch.map((m) => m.wave)],
        );
      }
    });
  }

  async getRollout(id: string): Promise<RolloutRecord | null> {
    const { rows } = await this.pool.query<RolloutRow>("SELECT * FROM rollouts WHERE id = $1", [id]);
    return rows[0] ? toRollout(rows[0]) : null;
  }

  async listRollouts(state?: RolloutState): Promise<RolloutRecord[]> {
    const { rows } = state === undefined
      ? await this.pool.query<RolloutRow>("SELECT * FROM rollouts ORDER BY created_at, id")
      : await this.pool.query<RolloutRow>("SELECT * FROM rollouts WHERE (progress_json::jsonb) ->> 'state' = $1 ORDER BY created_at, id", [state]);
    return rows.map(toRollout);
  }

  async updateRollout(id: string, progress: RolloutProgress, pauseReason: string | null, now: Date): Promise<void> {
    await this.pool.query("UPDATE rollouts SET progress_json = $1, pause_reason = $2, updated_at = $3 WHERE id = $4", [JSON.stringify(progress), pauseReason, now.toISOString(), id]);
  }

  async rolloutDevices(id: string): Promise<RolloutDeviceRecord[]> {
    const { rows } = await this.pool.query<RolloutDeviceRow>("SELECT * FROM rollout_devices WHERE rollout_id = $1 ORDER BY wave, device_id", [id]);
    return rows.map(toRolloutDevice);
  }

  async rolloutDevice(rolloutId: string, deviceId: string): Promise<RolloutDeviceRecord | null> {
    const { rows } = await this.pool.query<RolloutDeviceRow>("SELECT * FROM rollout_devices WHERE rollout_id = $1 AND device_id = $2", [rolloutId, deviceId]);
    return rows[0] ? toRolloutDevice(rows[0]) : null;
  }

  async rolloutMembers(id: string): Promise<RolloutMember[]> {
    const { rows } = await this.pool.query<{ device_id: string; wave: number; status: RolloutDeviceStatus; online: number }>(
      "SELECT r.device_id, r.wave, r.status, d.online FROM rollout_devices r JOIN devices d ON d.id = r.device_id WHERE r.rollout_id = $1 ORDER BY r.wave, r.device_id",
      [id],
    );
    return rows.map((row) => ({ deviceId: row.device_id, wave: row.wave, status: row.status, online: row.online === 1 }));
  }

  async rolloutStatusCounts(): Promise<Map<string, Map<RolloutDeviceStatus, number>>> {
    const { rows } = await this.pool.query<{ rollout_id: string; status: RolloutDeviceStatus; n: number }>("SELECT rollout_id, status, COUNT(*) AS n FROM rollout_devices GROUP BY rollout_id, status");
    return toStatusCounts(rows);
  }

  async setRolloutDeviceStatus(rolloutId: string, deviceId: string, status: RolloutDeviceStatus, detail: string | null, now: Date): Promise<boolean> {
    const updated = await this.pool.query(
      "UPDATE rollout_devices SET status = $1, detail = $2, updated_at = $3 WHERE rollout_id = $4 AND device_id = $5 AND status NOT IN ('healthy', 'failed', 'rolled-back')",
      [status, detail, now.toISOString(), rolloutId, deviceId],
    );
    return Boolean(updated.rowCount);
  }

  async markRolloutDevicesSent(rolloutId: string, deviceIds: string[], now: Date): Promise<void> {
    await this.pool.query("UPDATE rollout_devices SET status = 'sent', sent_at = $1, updated_at = $1 WHERE rollout_id = $2 AND device_id = ANY($3::text[]) AND status = 'pending'", [now.toISOString(), rolloutId, deviceIds]);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /** A secret every instance on this database shares, by name (the first one stored wins). */
  secret(name: string): { getOrCreate(fresh: string): Promise<string>; replace(value: string): Promise<void> } {
    return {
      getOrCreate: async (fresh) => {
        await this.pool.query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", [name, fresh]);
        const { rows } = await this.pool.query<{ value: string }>("SELECT value FROM server_secrets WHERE name = $1", [name]);
        return rows[0]!.value;
      },
      replace: async (value) => {
        await this.pool.query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2", [name, value]);
      },
    };
  }

  private async readDevice(db: Queryable, id: string, lock = false): Promise<DeviceRecord | null> {
    const { rows } = await db.query<DeviceRow>(`SELECT * FROM devices WHERE id = $1${lock ? " FOR UPDATE" : ""}`, [id]);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  private async setEnrollment(id: string, now: Date, kind: "accepted" | "rejected", sql: string): Promise<DeviceRecord> {
    return this.transaction(async (db) => {
      const updated = await db.query(sql, [id]);
      if (!updated.rowCount) throw new DeviceNotFoundError(id);
      await this.addEvent(db, id, now, kind, null);
      return (await this.readDevice(db, id))!;
    });
  }

  /** Runs `work` in one transaction on one connection: committed if it resolves, rolled back if it throws. */
  private transaction<T>(work: (db: pg.PoolClient) => Promise<T>): Promise<T> {
    return withClient(this.pool, async (client) => {
      await client.query("BEGIN");
      try {
        const result = await work(client);
        await client.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw error;
      }
    });
  }

  /** Appends to a device's history and keeps it within the retention: its newest N events, none older than the age. */
  private async addEvent(db: Queryable, id: string, now: Date, kind: DeviceEvent["kind"], report: Report | null): Promise<void> {
    await db.query("INSERT INTO device_events (device_id, at, kind, report_json) VALUES ($1, $2, $3, $4)", [id, now.toISOString(), kind, report ? JSON.stringify(report) : null]);
    await db.query("DELETE FROM device_events WHERE device_id = $1 AND id <= (SELECT id FROM device_events WHERE device_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)", [id, this.retention.maxEventsPerDevice]);
    if (now.getTime() - this.lastAgePrune >= AGE_PRUNE_INTERVAL_MS) {
      this.lastAgePrune = now.getTime();
      // On a connection of its own, after this write: not inside its transaction, holding its device's row.
      const cutoff = new Date(now.getTime() - this.retention.maxAgeDays * 86_400_000).toISOString();
      setImmediate(() => void this.pool.query("DELETE FROM device_events WHERE id IN (SELECT id FROM device_events WHERE at < $1 ORDER BY at LIMIT $2)", [cutoff, AGE_PRUNE_BATCH]).catch(() => undefined));
    }
  }

  /** Records a key as barred; the first reason stays (a key revoked, then its device rekeyed, stays 'revoked'). */
  private async barKey(db: Queryable, publicKey: string, deviceId: string, now: Date, reason: RevokedKey["reason"]): Promise<void> {
    await db.query("INSERT INTO revoked_keys (public_key, device_id, revoked_at, reason) VALUES ($1, $2, $3, $4) ON CONFLICT (public_key) DO NOTHING", [publicKey, deviceId, now.toISOString(), reason]);
  }

  /** Each migration in its own transaction, all under an advisory lock: instances starting together take turns. */
  private migrate(): Promise<void> {
    return withClient(this.pool, async (client) => {
      await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
      try {
        await client.query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
        const { rows } = await client.query<{ version: number }>("SELECT version FROM schema_version");
        const version = rows[0]?.version ?? 0;
        if (version > PG_MIGRATIONS.length) throw new AptOstreeError("E_STORE_VERSION", `the database's schema is version ${version}, newer than this server knows (${PG_MIGRATIONS.length}): run the newer server`);
        for (let next = version; next < PG_MIGRATIONS.length; next++) {
          await client.query("BEGIN");
          try {
            await client.query(PG_MIGRATIONS[next]!);
            await client.query("DELETE FROM schema_version");
            await client.query("INSERT INTO schema_version (version) VALUES ($1)", [next + 1]);
            await client.query("COMMIT");
          } catch (error) {
            await client.query("ROLLBACK").catch(() => undefined);
            throw error;
          }
        }
      } finally {
        await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => undefined);
      }
    });
  }
}

/** The URL without its password, for messages and logs. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(an unparsable URL)";
  }
}
