/** Rows as both stores keep them (JSON in text columns, flags as 0/1), and the records made of them. */
import { AptOstreeError } from "../../shared/errors.ts";
import { DEFAULT_LIMITS } from "../config/limits.ts";
import { ENROLLMENT_STATES, type DeviceCounts, type DeviceRecord, type EnrollmentState, type HistoryRetention, type RolloutDeviceRecord, type RolloutRecord } from "./store.ts";
import type { RolloutDeviceStatus } from "./waves.ts";

export const DEFAULT_RETENTION: HistoryRetention = { maxEventsPerDevice: DEFAULT_LIMITS.historyMaxEventsPerDevice, maxAgeDays: DEFAULT_LIMITS.historyMaxAgeDays };

export class DeviceNotFoundError extends AptOstreeError {
  constructor(id: string) {
    super("E_DEVICE_NOT_FOUND", `no device '${id}'`);
  }
}

export interface DeviceRow {
  id: string;
  public_key: string;
  enrollment: DeviceRecord["enrollment"];
  groups_json: string;
  reported_groups_json: string;
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

export interface RolloutRow {
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

export interface RolloutDeviceRow {
  rollout_id: string;
  device_id: string;
  wave: number;
  status: RolloutDeviceRecord["status"];
  sent_at: string | null;
  updated_at: string;
  detail: string | null;
}

export function toRolloutDevice(row: RolloutDeviceRow): RolloutDeviceRecord {
  return { rolloutId: row.rollout_id, deviceId: row.device_id, wave: row.wave, status: row.status, sentAt: row.sent_at, updatedAt: row.updated_at, detail: row.detail };
}

export function toRollout(row: RolloutRow): RolloutRecord {
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

export function toRecord(row: DeviceRow): DeviceRecord {
  return {
    id: row.id,
    publicKey: row.public_key,
    enrollment: row.enrollment,
    groups: JSON.parse(row.groups_json) as string[],
    reportedGroups: JSON.parse(row.reported_groups_json) as string[],
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

export function sortedSet(values: string[]): string[] {
  return [...new Set(values)].sort();
}

/** Devices per status, per rollout, from `SELECT rollout_id, status, COUNT(*) AS n ... GROUP BY rollout_id, status`. */
export function toStatusCounts(rows: Array<{ rollout_id: string; status: RolloutDeviceStatus; n: number }>): Map<string, Map<RolloutDeviceStatus, number>> {
  const counts = new Map<string, Map<RolloutDeviceStatus, number>>();
  for (const row of rows) {
    const statuses = counts.get(row.rollout_id) ?? new Map<RolloutDeviceStatus, number>();
    statuses.set(row.status, row.n);
    counts.set(row.rollout_id, statuses);
  }
  return counts;
}

/**
 * DeviceCounts from the per-enrollment aggregate (`enrollment, COUNT(*) AS n, SUM(online) AS online`)
 * and the accepted devices' `key, COUNT(*) AS n` by state and by booted version.
 */
export function toDeviceCounts(
  byEnrollmentRows: Array<{ enrollment: EnrollmentState; n: number; online: number }>,
  byStateRows: Array<{ key: string | null; n: number }>,
  byVersionRows: Array<{ key: string | null; n: number }>,
): DeviceCounts {
  const byEnrollment = Object.fromEntries(ENROLLMENT_STATES.map((state) => [state, 0])) as Record<EnrollmentState, number>;
  let devices = 0;
  let online = 0;
  for (const row of byEnrollmentRows) {
    byEnrollment[row.enrollment] = row.n;
    devices += row.n;
    online += row.online;
  }
  // Keys are data (a version may be called 'constructor'): own properties only.
  const counted = (rows: Array<{ key: string | null; n: number }>) => Object.fromEntries(rows.map((r) => [r.key ?? "unknown", r.n]));
  return { devices, online, byEnrollment, byState: counted(byStateRows), byVersion: counted(byVersionRows) };
}
