/**
 * Pure rollout logic: which devices belong to which wave, and what the rollout should do next
 * given where its devices are. No I/O: the engine (rollouts.ts) fetches the facts and applies
 * the decision.
 */
import { createHash } from "node:crypto";

export type RolloutState = "running" | "paused" | "completed" | "aborted";
export type RolloutDeviceStatus = "pending" | "sent" | "in-progress" | "healthy" | "failed" | "rolled-back";

export const FINAL_STATUSES: ReadonlySet<RolloutDeviceStatus> = new Set(["healthy", "failed", "rolled-back"]);
export const FAILED_STATUSES: ReadonlySet<RolloutDeviceStatus> = new Set(["failed", "rolled-back"]);

export interface RolloutPlan {
  /** Cumulative percentages of the selected devices, ascending, ending at 100 (e.g. 1, 10, 50, 100). */
  waves: number[];
  waveDelaySeconds: number;
  waveTimeoutSeconds: number;
  /** Pause when more than this percentage of the rollout's devices failed or rolled back. */
  maxFailuresPercent: number;
}

export interface RolloutProgress {
  state: RolloutState;
  currentWave: number;
  /** When the current wave started (ISO), and when it completed (ISO) or null. */
  waveStartedAt: string;
  waveCompletedAt: string | null;
}

export interface RolloutMember {
  deviceId: string;
  wave: number;
  status: RolloutDeviceStatus;
  online: boolean;
}

export type RolloutDecision =
  | { kind: "send"; deviceIds: string[] }
  | { kind: "time-out"; deviceIds: string[] }
  | { kind: "pause"; reason: string }
  | { kind: "wave-completed"; wave: number }
  | { kind: "next-wave"; wave: number }
  | { kind: "complete" }
  | { kind: "wait" };

/** Parses `1%,10%,50%,100%`: ascending, each in (0, 100], the last exactly 100. */
export function parseWaves(text: string): number[] {
  const waves = text.split(",").map((part) => {
    const match = /^\s*(\d+(?:\.\d+)?)%?\s*$/.exec(part);
    if (!match) throw new RangeError(`'${part}' is not a percentage`);
    return Number(match[1]);
  });
  waves.forEach((value, index) => {
    if (value <= 0 || value > 100) throw new RangeError(`wave ${index + 1} (${value}%) must be above 0% and at most 100%`);
    if (index > 0 && value <= waves[index - 1]!) throw new RangeError(`waves must grow: ${waves[index - 1]}% then ${value}%`);
  });
  if (waves.at(-1) !== 100) throw new RangeError("the last wave must be 100%");
  return waves;
}

/**
 * Wave of each device: devices ordered by a hash of the rollout id and their id (stable and
 * spread across groups), then cut at the cumulative percentages; every wave gets at least one.
 */
export function assignWaves(rolloutId: string, deviceIds: string[], waves: number[]): Map<string, number> {
  const keyed = deviceIds.map((id) => ({ id, key: createHash("sha256").update(`${rolloutId}\0${id}`).digest("hex") }));
  const order = keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((entry) => entry.id);
  const assignment = new Map<string, number>();
  let next = 0;
  waves.forEach((percent, wave) => {
    const upTo = wave === waves.length - 1 ? order.length : Math.min(order.length, Math.max(next + 1, Math.ceil((percent / 100) * order.length)));
    for (; next < upTo; next++) assignment.set(order[next]!, wave);
  });
  return assignment;
}

/** What to do now; the engine applies one decision at a time and asks again. */
export function decide(plan: RolloutPlan, progress: RolloutProgress, members: RolloutMember[], now: Date): RolloutDecision {
  if (progress.state !== "running") return { kind: "wait" };
  const failed = members.filter((m) => FAILED_STATUSES.has(m.status)).length;
  if (members.length > 0 && (failed / members.length) * 100 > plan.maxFailuresPercent) {
    return { kind: "pause", reason: `${failed} of ${members.length} devices failed or rolled back (${((failed / members.length) * 100).toFixed(1)}%), above the ${plan.maxFailuresPercent}% threshold` };
  }
  const toSend = members.filter((m) => m.wave <= progress.currentWave && m.status === "pending" && m.online).map((m) => m.deviceId);
  if (toSend.length > 0) return { kind: "send", deviceIds: toSend };

  const wave = members.filter((m) => m.wave === progress.currentWave);
  const open = wave.filter((m) => !FINAL_STATUSES.has(m.status));
  if (progress.waveCompletedAt === null) {
    if (open.length === 0) return { kind: "wave-completed", wave: progress.currentWave };
    const deadline = Date.parse(progress.waveStartedAt) + plan.waveTimeoutSeconds * 1000;
    if (now.getTime() >= deadline) return { kind: "time-out", deviceIds: open.map((m) => m.deviceId) };
    return { kind: "wait" };
  }
  if (progress.currentWave === plan.waves.length - 1) return { kind: "complete" };
  if (now.getTime() >= Date.parse(progress.waveCompletedAt) + plan.waveDelaySeconds * 1000) return { kind: "next-wave", wave: progress.currentWave + 1 };
  return { kind: "wait" };
}

/**
 * Whether a device's retained update command must be replaced by the signed withdrawal, and
 * with which reason; null keeps it. Every device that was sent the update and did not install
 * it: failed, rolled back or timed out ("aborted": the update is over for it, a download stops),
 * in any rollout state; when paused, the devices that have not started ("paused", resume sends
 * it again); when aborted, those in progress too. Healthy devices installed it; pending ones
 * never had it.
 */
export function withdrawalFor(state: RolloutState, member: { status: RolloutDeviceStatus; sentAt: string | null }): "paused" | "aborted" | null {
  if (member.sentAt === null || member.status === "pending" || member.status === "healthy") return null;
  if (FAILED_STATUSES.has(member.status) || state === "aborted") return "aborted";
  if (state === "paused" && member.status === "sent") return "paused";
  return null;
}

/** Maps a device report's state to its status in the rollout it answers. */
export function statusFromReport(state: string, bootedCommit: string | undefined, target: string): RolloutDeviceStatus | null {
  switch (state) {
    case "downloading":
    case "staged":
    case "rebooting":
    case "verifying":
      return "in-progress";
    case "healthy":
      return bootedCommit === target ? "healthy" : null;
    case "failed":
      return "failed";
    case "rolled-back":
      return "rolled-back";
    default:
      return null;
  }
}
