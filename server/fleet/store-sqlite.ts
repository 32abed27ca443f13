/** FleetStore on SQLite (better-sqlite3, WAL): one file under the server's data dir. */
import Database from "better-sqlite3";
import { AptOstreeError } from "../../shared/errors.ts";
import type { Report } from "../../shared/wire/report.ts";
import type { DeviceEvent, DeviceRecord, FleetStore, RolloutDeviceRecord, RolloutRecord } from "./store.ts";
import type { RolloutDeviceStatus, RolloutProgress } from "./waves.ts";

export class DeviceNotFoundError extends AptOstreeError {
  constructor(id: string) {
    super("E_DEVICE_NOT_FOUND", `no device '${id}'`);
  }
}

/** Each entry upgrades the schema by one version (PRAGMA user_version). */
const MIGRATIONS = [
  `CREATE TABLE devices (
     id TEXT PRIMARY KEY,
     public_key TEXT NOT NULL,
     enrollment TEXT NOT NULL CHECK (enrollment IN ('pending', 'accepted', 'rejected')),
     groups_json TEXT NOT NULL DEFAULT '[]',
     tags_json TEXT NOT NULL DEFAULT '[]',
     architecture TEXT,
     state TEXT,
     booted_json TEXT,
     staged_json TEXT,
     agent_version TEXT,
     online INTEGER NOT NULL DEFAULT 0,
     last_seen TEXT,
     last_counter INTEGER,
     enrolled_at TEXT NOT NULL
   );
   CREATE TABLE device_events (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     device_id TEXT NOT NULL REFERENCES devices(id),
     at TEXT NOT NULL,
     kind TEXT NOT NULL,
     report_json TEXT
   );
   CREATE INDEX device_events_by_device ON device_events(device_id, id);`,
  `CREATE TABLE rollouts (
     id TEXT PRIMARY KEY,
     ref TEXT NOT NULL,
     channel TEXT NOT NULL,
     version TEXT NOT NULL,
     commit_id TEXT NOT NULL,
     selector_json TEXT NOT NULL,
     plan_json TEXT NOT NULL,
     progress_json TEXT NOT NULL,
     pause_reason TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE rollout_devices (
     rollout_id TEXT NOT NULL REFERENCES rollouts(id),
     device_id TEXT NOT NULL REFERENCES devices(id),
     wave INTEGER NOT NULL,
     status TEXT NOT NULL,
     sent_at TEXT,
     updated_at TEXT NOT NULL,
     detail TEXT,
     PRIMARY KEY (rollout_id, device_id)
   );`,
  `ALTER TABLE devices ADD COLUMN pending_json TEXT;
   ALTER TABLE devices ADD COLUMN rollback_json TEXT;`,
];

interface DeviceRow {
  id: string;
  public_key: string;
  enrollment: DeviceRecord["enrollment"];
  groups_json: string;
  tags_json: string;
  architecture: string | null;
  state: DeviceRecord["state"];
  booted_json: string | null;
  staged_json: string | null;
  pending_json: string | null;
  rollback_json: string | null;
  agent_version: string | null;
  online: number;
  last_seen: string | null;
  last_counter: number | null;
  enrolled_at: string;
}

export class SqliteFleetStore implements FleetStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.pragma("foreign_keys = ON");
    this.migrate();
  }

  getDevice(id: string): DeviceRecord | null {
    const row = this.db.prepare("SELECT * FROM devices WHERE id = ?").get(id) as DeviceRow | undefined;
    return row ? toRecord(row) : null;
  }

  listDevices(): DeviceRecord[] {
    return (this.db.prepare("SELECT * FROM devices ORDER BY id").all() as DeviceRow[]).map(toRecord);
  }

  enrollPending(id: string, publicKey: string, now: Date): DeviceRecord {
    this.db.transaction(() => {
      const inserted = this.db
        .prepare("INSERT OR IGNORE INTO devices (id, public_key, enrollment, enrolled_at) VALUES (?, ?, 'pending', ?)")
        .run(id, publicKey, now.toISOString());
      if (inserted.changes > 0) this.addEvent(id, now, "enrolled", null);
    })();
    return this.getDevice(id)!;
  }

  acceptDevice(id: string, now: Date): DeviceRecord {
    this.db.transaction(() => {
      const updated = this.db.prepare("UPDATE devices SET enrollment = 'accepted' WHERE id = ?").run(id);
      if (updated.changes === 0) throw new DeviceNotFoundError(id);
      this.addEvent(id, now, "accepted", null);
    })();
    return this.getDevice(id)!;
  }

  setDeviceTags(id: string, tags: string[]): DeviceRecord {
    const updated = this.db.prepare("UPDATE devices SET tags_json = ? WHERE id = ?").run(JSON.stringify([...new Set(tags)].sort()), id);
    if (updated.changes === 0) throw new DeviceNotFoundError(id);
    return this.getDevice(id)!;
  }

  recordReport(report: Report, now: Date): void {
    this.db.transaction(() => {
      const json = (value: unknown) => (value === undefined ? undefined : value === null ? null : JSON.stringify(value));
      this.db
        .prepare(
          `UPDATE devices SET state = @state, last_counter = @counter, last_seen = @now, online = 1,
             architecture = COALESCE(@architecture, architecture), agent_version = COALESCE(@agentVersion, agent_version),
             groups_json = COALESCE(@groups, groups_json),
             booted_json = COALESCE(@booted, booted_json),
             staged_json = CASE WHEN @stagedGiven THEN @staged ELSE staged_json END,
             pending_json = CASE WHEN @pendingGiven THEN @pending ELSE pending_json END,
             rollback_json = CASE WHEN @rollbackGiven THEN @rollback ELSE rollback_json END
           WHERE id = @id`,
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
      this.addEvent(report.deviceId, now, "report", report);
    })();
  }

  setOnline(id: string, online: boolean, now: Date): void {
    this.db.transaction(() => {
      const updated = this.db.prepare("UPDATE devices SET online = ?, last_seen = ? WHERE id = ?").run(online ? 1 : 0, now.toISOString(), id);
      if (updated.changes > 0) this.addEvent(id, now, online ? "online" : "offline", null);
    })();
  }

  deviceEvents(id: string, limit: number): DeviceEvent[] {
    const rows = this.db.prepare("SELECT * FROM device_events WHERE device_id = ? ORDER BY id DESC LIMIT ?").all(id, limit) as Array<{
      id: number;
      device_id: string;
      at: string;
      kind: DeviceEvent["kind"];
      report_json: string | null;
    }>;
    return rows.map((row) => ({ id: row.id, deviceId: row.device_id, at: row.at, kind: row.kind, report: row.report_json ? (JSON.parse(row.report_json) as Report) : null }));
  }

  createRollout(rollout: RolloutRecord, members: Array<{ deviceId: string; wave: number }>): void {
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

  getRollout(id: string): RolloutRecord | null {
    const row = this.db.prepare("SELECT * FROM rollouts WHERE id = ?").get(id) as RolloutRow | undefined;
    return row ? toRollout(row) : null;
  }

  listRollouts(): RolloutRecord[] {
    return (this.db.prepare("SELECT * FROM rollouts ORDER BY created_at, id").all() as RolloutRow[]).map(toRollout);
  }

  updateRollout(id: string, progress: RolloutProgress, pauseReason: string | null, now: Date): void {
    this.db.prepare("UPDATE rollouts SET progress_json = ?, pause_reason = ?, updated_at = ? WHERE id = ?").run(JSON.stringify(progress), pauseReason, now.toISOString(), id);
  }

  rolloutDevices(id: string): RolloutDeviceRecord[] {
    const rows = this.db.prepare("SELECT * FROM rollout_devices WHERE rollout_id = ? ORDER BY wave, device_id").all(id) as RolloutDeviceRow[];
    return rows.map((row) => ({ rolloutId: row.rollout_id, deviceId: row.device_id, wave: row.wave, status: row.status, sentAt: row.sent_at, updatedAt: row.updated_at, detail: row.detail }));
  }

  setRolloutDeviceStatus(rolloutId: string, deviceId: string, status: RolloutDeviceStatus, detail: string | null, now: Date): void {
    this.db.prepare("UPDATE rollout_devices SET status = ?, detail = ?, updated_at = ? WHERE rollout_id = ? AND device_id = ?").run(status, detail, now.toISOString(), rolloutId, deviceId);
  }

  markRolloutDevicesSent(rolloutId: string, deviceIds: string[], now: Date): void {
    const mark = this.db.prepare("UPDATE rollout_devices SET status = 'sent', sent_at = ?, updated_at = ? WHERE rollout_id = ? AND device_id = ? AND status = 'pending'");
    this.db.transaction(() => {
      for (const deviceId of deviceIds) mark.run(now.toISOString(), now.toISOString(), rolloutId, deviceId);
    })();
  }

  close(): void {
    this.db.close();
  }

  private addEvent(id: string, now: Date, kind: DeviceEvent["kind"], report: Report | null): void {
    this.db.prepare("INSERT INTO device_events (device_id, at, kind, report_json) VALUES (?, ?, ?, ?)").run(id, now.toISOString(), kind, report ? JSON.stringify(report) : null);
  }

  private migrate(): void {
    const version = this.db.pragma("user_version", { simple: true }) as number;
    for (let next = version; next < MIGRATIONS.length; next++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[next]!);
        this.db.pragma(`user_version = ${next + 1}`);
      })();
    }
  }
}

interface RolloutRow {
  id: string;
  ref: string;
  channel: string;
  version: string;
  commit_id: string;
  selector_json: string;
  plan_json: string;
  progress_json: string;
  pause_reason: string | null;
  created_at: string;
  updated_at: string;
}

interface RolloutDeviceRow {
  rollout_id: string;
  device_id: string;
  wave: number;
  status: RolloutDeviceRecord["status"];
  sent_at: string | null;
  updated_at: string;
  detail: string | null;
}

function toRollout(row: RolloutRow): RolloutRecord {
  return {
    id: row.id,
    ref: row.ref,
    channel: row.channel,
    version: row.version,
    commit: row.commit_id,
    selector: JSON.parse(row.selector_json),
    plan: JSON.parse(row.plan_json),
    progress: JSON.parse(row.progress_json),
    pauseReason: row.pause_reason,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toRecord(row: DeviceRow): DeviceRecord {
  return {
    id: row.id,
    publicKey: row.public_key,
    enrollment: row.enrollment,
    groups: JSON.parse(row.groups_json) as string[],
    tags: JSON.parse(row.tags_json) as string[],
    architecture: row.architecture,
    state: row.state,
    booted: row.booted_json ? JSON.parse(row.booted_json) : null,
    staged: row.staged_json ? JSON.parse(row.staged_json) : null,
    pending: row.pending_json ? JSON.parse(row.pending_json) : null,
    rollback: row.rollback_json ? JSON.parse(row.rollback_json) : null,
    agentVersion: row.agent_version,
    online: row.online === 1,
    lastSeen: row.last_seen,
    lastCounter: row.last_counter,
    enrolledAt: row.enrolled_at,
  };
}
