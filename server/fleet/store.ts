/**
 * The fleet's state behind one interface, so SQLite (the default, a file in the data dir) can
 * be swapped for PostgreSQL without touching the broker, the API or rollouts.
 */
import type { Report } from "../../shared/wire/report.ts";
import type { RolloutDeviceStatus, RolloutMember, RolloutPlan, RolloutProgress, RolloutState } from "./waves.ts";

export type EnrollmentState = "pending" | "accepted" | "rejected";

export interface DeploymentRef {
  commit: string;
  version: string;
}

export interface DeviceRecord {
  id: string;
  /** base64 ed25519 public key the device enrolled with. */
  publicKey: string;
  enrollment: EnrollmentState;
  groups: string[];
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
  kind: "report" | "online" | "offline" | "enrolled" | "accepted" | "rejected";
  report: Report | null;
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
  createRollout(rollout: RolloutRecord, members: Array<{ deviceId: string; wave: number }>): void;
  getRollout(id: string): RolloutRecord | null;
  /** All rollouts, or those in one state. */
  listRollouts(state?: RolloutState): RolloutRecord[];
  updateRollout(id: string, progress: RolloutProgress, pauseReason: string | null, now: Date): void;
  rolloutDevices(id: string): RolloutDeviceRecord[];
  rolloutDevice(rolloutId: string, deviceId: string): RolloutDeviceRecord | null;
  /** A rollout's devices with their wave, status and online flag: what `decide()` takes. */
  rolloutMembers(id: string): RolloutMember[];
  /** Devices per status, per rollout. */
  rolloutStatusCounts(): Map<string, Map<RolloutDeviceStatus, number>>;
  setRolloutDeviceStatus(rolloutId: string, deviceId: string, status: RolloutDeviceStatus, detail: string | null, now: Date): void;
  /** Marks devices as sent, in one transaction, before their command is published (a restart re-publishes the same one). */
  markRolloutDevicesSent(rolloutId: string, deviceIds: string[], now: Date): void;

  getDevice(id: string): DeviceRecord | null;
  /** All devices, or those in one enrollment state. */
  listDevices(enrollment?: EnrollmentState): DeviceRecord[];
  deviceCounts(): DeviceCounts;
  /** Devices in one enrollment state (an index count). */
  countDevices(enrollment: EnrollmentState): number;
  /** Records an unknown device as pending (no-op for a known one); returns the record. */
  enrollPending(id: string, publicKey: string, now: Date): DeviceRecord;
  /** Accepts a pending (or rejected) device; throws DeviceNotFoundError for an unknown id. */
  acceptDevice(id: string, now: Date): DeviceRecord;
  /** Rejects a device (kept with its key, offline, refused from now on); throws DeviceNotFoundError. */
  rejectDevice(id: string, now: Date): DeviceRecord;
  /** Removes a device, its history and its rollout memberships; returns what it was; throws DeviceNotFoundError. */
  deleteDevice(id: string): DeviceRecord;
  /** Replaces the operator-set tags of a device; throws DeviceNotFoundError for an unknown id. */
  setDeviceTags(id: string, tags: string[]): DeviceRecord;
  /** Stores an accepted report: device fields, counter and history in one transaction. */
  recordReport(report: Report, now: Date): void;
  /** Records a change of the online flag; false (and nothing written) when it already was so. */
  setOnline(id: string, online: boolean, now: Date): boolean;
  /** Newest first. */
  deviceEvents(id: string, limit: number): DeviceEvent[];
  close(): void;
}
