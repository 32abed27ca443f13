/** Pure fleet summaries from store records: devices per version, state and enrollment; outcomes per rollout. */
import type { DeviceRecord, RolloutDeviceRecord, RolloutRecord } from "./store.ts";

export interface FleetSummary {
  devices: number;
  online: number;
  byEnrollment: Record<string, number>;
  byState: Record<string, number>;
  byVersion: Record<string, number>;
  rollouts: Array<{ id: string; ref: string; version: string; state: string; devices: number; healthy: number; failed: number; rolledBack: number }>;
}

/** Counts keyed by data (a device's version may be `constructor` or `__proto__`): a Map, then own properties. */
function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return Object.fromEntries(counts);
}

export function summarizeFleet(devices: DeviceRecord[], rollouts: Array<{ rollout: RolloutRecord; members: RolloutDeviceRecord[] }>): FleetSummary {
  const accepted = devices.filter((d) => d.enrollment === "accepted");
  return {
    devices: devices.length,
    online: devices.filter((d) => d.online).length,
    byEnrollment: countBy(devices, (d) => d.enrollment),
    byState: countBy(accepted, (d) => d.state ?? "unknown"),
    byVersion: countBy(accepted, (d) => d.booted?.version ?? "unknown"),
    rollouts: rollouts.map(({ rollout, members }) => ({
      id: rollout.id,
      ref: rollout.ref,
      version: rollout.version,
      state: rollout.progress.state,
      devices: members.length,
      healthy: members.filter((m) => m.status === "healthy").length,
      failed: members.filter((m) => m.status === "failed").length,
      rolledBack: members.filter((m) => m.status === "rolled-back").length,
    })),
  };
}
