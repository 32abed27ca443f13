/**
 * The fleet's state behind one interface, so SQLite (the default, a file in the data dir) can
 * be swapped for PostgreSQL without touching the broker, the API or rollouts.
 */
import type { Report } from "../../shared/wire/report.ts";
import type { RolloutDeviceStatus, RolloutPlan, RolloutProgress } from "./waves.ts";

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
  kind: "report" | "online" | "offline" | "enrolled" | "accepted";
  report: Report | null;
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
  listRollouts(): RolloutRecord[];
  updateRollout(id: string, progress: RolloutProgress, pauseReason: string | null, now: Date): void;
  rolloutDevices(id: string): RolloutDeviceRecord[];
  setRolloutDeviceStatus(rolloutId: string, deviceId: string, status: RolloutDeviceStatus, detail: string | null, now: Date): void;
  /** Marks devices as sent, in one transaction, before their command is published (a restart re-publishes the same one). */
  markRolloutDevicesSent(rolloutId: string, deviceIds: string[], now: Date): void;

  getDevice(id: string): DeviceRecord | null;
  listDevices(): DeviceRecord[];
  /** Records an unknown device as pending (no-op for a known one); returns the record. */
  enrollPending(id: string, publicKey: string, now: Date): DeviceRecord;
  /** Accepts a pending (or rejected) device; throws DeviceNotFoundError for an unknown id. */
  acceptDevice(id: string, now: Date): DeviceRecord;
  /** Replaces the operator-set tags of a device; throws DeviceNotFoundError for an unknown id. */
  setDeviceTags(id: string, tags: string[]): DeviceRecord;
  /** Stores an accepted report: device fields, counter and history in one transaction. */
  recordReport(report: Report, now: Date): void;
  setOnline(id: string, online: boolean, now: Date): void;
  /** Newest first. */
  deviceEvents(id: string, limit: number): DeviceEvent[];
  close(): void;
}
