/**
 * The fleet's state behind one interface, so SQLite (the default, a file in the data dir) can
 * be swapped for PostgreSQL without touching the broker, the API or rollouts.
 */
import type { Report } from "../../shared/wire/report.ts";
import type { RolloutDeviceStatus, RolloutMember, RolloutPlan, RolloutProgress, RolloutState } from "./waves.ts";

/**
 * pending: enrolled itself, waits for the operator. preauthorized: the operator named its key
 * before it ever connected; accepted at its first connection with exactly that key. accepted.
 * rejected: refused under this id until accepted again. revoked: refused for good under this id,
 * and its key anywhere; `rekey` gives it a new key and admits it again.
 */
export type EnrollmentState = "pending" | "preauthorized" | "accepted" | "rejected" | "revoked";

export const ENROLLMENT_STATES: readonly EnrollmentState[] = ["pending", "preauthorized", "accepted", "rejected", "revoked"];

export interface DeploymentRef {
  commit: string;
  version: string;
}

export interface DeviceRecord {
  id: string;
  /** base64 ed25519 public key the device enrolled with. */
  publicKey: string;
  enrollment: EnrollmentState;
  /** Rollout groups, as the operator assigns them: what `group=` selects and the ACL opens. */
  groups: string[];
  /** Groups the device says it is in (its agent config), shown only: never selected on. */
  reportedGroups: string[];
  tags: string[];
  architecture: string | null;
  state: Report["state"] | null;
  booted: DeploymentRef | null;
  staged: DeploymentRef | null;
  /** The deployment the next boot starts, when it is not the booted one. */
  pending: DeploymentRef | null;
  rollback: DeploymentRef | null;
  agentVersion: string | null;
  online: boolean;
  lastSeen: string | null;
  /** Counter of the last accepted report (replay protection). */
  lastCounter: number | null;
  enrolledAt: string;
}

export interface DeviceEvent {
  id: number;
  deviceId: string;
  at: string;
  kind: "report" | "online" | "offline" | "enrolled" | "preauthorized" | "accepted" | "rejected" | "revoked" | "rekeyed" | "groups";
  report: Report | null;
}

/** A key no device may present any more: the device it was revoked from, when, and how. */
export interface RevokedKey {
  publicKey: string;
  deviceId: string;
  revokedAt: string;
  reason: "revoked" | "rekeyed";
}

/** Devices counted by the store (aggregate queries), never by reading every record. */
export interface DeviceCounts {
  devices: number;
  online: number;
  /** Every enrollment state, zeros included. */
  byEnrollment: Record<EnrollmentState, number>;
  /** Accepted devices by last reported state ("unknown" before the first report). */
  byState: Record<string, number>;
  /** Accepted devices by booted version ("unknown" before the first report). */
  byVersion: Record<string, number>;
}

/** How long device history is kept (config `limits:` historyMaxEventsPerDevice, historyMaxAgeDays). */
export interface HistoryRetention {
  maxEventsPerDevice: number;
  maxAgeDays: number;
}

export interface RolloutSelector {
  groups: string[];
  tags: string[];
  devices: string[];
}

export interface RolloutRecord {
  id: string;
  ref: string;
  channel: string;
  version: string;
  commit: string;
  selector: RolloutSelector;
  plan: RolloutPlan;
  progress: RolloutProgress;
  pauseReason: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface RolloutDeviceRecord {
  rolloutId: string;
  deviceId: string;
  wave: number;
  status: RolloutDeviceStatus;
  sentAt: string | null;
  updatedAt: string;
  detail: string | null;
}

export interface FleetStore {
  createRollout(rollout: RolloutRecord, members: Array<{ deviceId: string; wave: number }>): Promise<void>;
  getRollout(id: string): Promise<RolloutRecord | null>;
  /** All rollouts, or those in one state. */
  listRollouts(state?: RolloutState): Promise<RolloutRecord[]>;
  updateRollout(id: string, progress: RolloutProgress, pauseReason: string | null, now: Date): Promise<void>;
  rolloutDevices(id: string): Promise<RolloutDeviceRecord[]>;
  rolloutDevice(rolloutId: string, deviceId: string): Promise<RolloutDeviceRecord | null>;
  /** A rollout's devices with their wave, status and online flag: what `decide()` takes. */
  rolloutMembers(id: string): Promise<RolloutMember[]>;
  /** Devices per status, per rollout. */
  rolloutStatusCounts(): Promise<Map<string, Map<RolloutDeviceStatus, number>>>;
  /** Sets a member's status unless it is final already (healthy, failed, rolled-back); false when it was (or is not a member). */
  setRolloutDeviceStatus(rolloutId: string, deviceId: string, status: RolloutDeviceStatus, detail: string | null, now: Date): Promise<boolean>;
  /** Marks devices as sent, in one transaction, before their command is published (a restart re-publishes the same one). */
  markRolloutDevicesSent(rolloutId: string, deviceIds: string[], now: Date): Promise<void>;

  getDevice(id: string): Promise<DeviceRecord | null>;
  /** All devices, or those in one enrollment state. */
  listDevices(enrollment?: EnrollmentState): Promise<DeviceRecord[]>;
  deviceCounts(): Promise<DeviceCounts>;
  /** Devices in one enrollment state, or all of them (an index count). */
  countDevices(enrollment?: EnrollmentState): Promise<number>;
  /** Records an unknown device as pending (no-op for a known one); returns the record. */
  enrollPending(id: string, publicKey: string, now: Date): Promise<DeviceRecord>;
  /**
   * Records (or replaces a pending or preauthorized record with) a preauthorized device: this key,
   * these operator-assigned groups. The caller checks the state it replaces (device-admin.ts).
   */
  preauthorizeDevice(id: string, publicKey: string, groups: string[], now: Date): Promise<DeviceRecord>;
  /** Accepts a pending, preauthorized (or rejected) device; throws DeviceNotFoundError for an unknown id. */
  acceptDevice(id: string, now: Date): Promise<DeviceRecord>;
  /** Rejects a device (kept with its key, offline, refused from now on); throws DeviceNotFoundError. */
  rejectDevice(id: string, now: Date): Promise<DeviceRecord>;
  /** Revokes a device: `revoked`, offline, its key barred for any id from now on; throws DeviceNotFoundError. */
  revokeDevice(id: string, now: Date): Promise<DeviceRecord>;
  /**
   * Gives a device a new key: the old one is barred, the report counter starts again, and the
   * device is accepted (a preauthorized one stays preauthorized); throws DeviceNotFoundError.
   */
  rekeyDevice(id: string, publicKey: string, now: Date): Promise<DeviceRecord>;
  /** Why a key is barred (revoke, rekey), or null. */
  revokedKey(publicKey: string): Promise<RevokedKey | null>;
  /** Removes a device, its history and its rollout memberships; returns what it was; throws DeviceNotFoundError. */
  deleteDevice(id: string): Promise<DeviceRecord>;
  /** Replaces the operator-set tags of a device; throws DeviceNotFoundError for an unknown id. */
  setDeviceTags(id: string, tags: string[]): Promise<DeviceRecord>;
  /** Replaces the operator-assigned groups of a device; throws DeviceNotFoundError for an unknown id. */
  setDeviceGroups(id: string, groups: string[], now: Date): Promise<DeviceRecord>;
  /**
   * Stores an accepted report: device fields, counter and history in one transaction; false (and
   * nothing written) when the device is gone or its stored counter is not below the report's
   * (another instance, or a concurrent message, took this counter first).
   */
  recordReport(report: Report, now: Date): Promise<boolean>;
  /** Records a change of the online flag; false (and nothing written) when it already was so. */
  setOnline(id: string, online: boolean, now: Date): Promise<boolean>;
  /** Newest first. */
  deviceEvents(id: string, limit: number): Promise<DeviceEvent[]>;
  close(): Promise<void>;
}
