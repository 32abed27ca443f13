/**
 * The fleet summary (`/api/v1/fleet`): devices per version, state and enrollment; outcomes per
 * rollout. Built from the store's aggregate counts, never from every device record: a registry
 * flooded with pending devices costs an index count, not a read of each row.
 */
import type { DeviceCounts, FleetStore, RolloutRecord } from "./store.ts";
import type { RolloutDeviceStatus } from "./waves.ts";

export interface FleetSummary extends DeviceCounts {
  rollouts: Array<{ id: string; ref: string; version: string; state: string; devices: number; healthy: number; failed: number; rolledBack: number }>;
}

export interface RolloutCounts {
  rollout: RolloutRecord;
  statuses: ReadonlyMap<RolloutDeviceStatus, number>;
}

/** Pure: the summary from counts (count keys are data, kept as own properties by the store). */
export function summarizeFleet(counts: DeviceCounts, rollouts: RolloutCounts[]): FleetSummary {
  return {
    ...counts,
    rollouts: rollouts.map(({ rollout, statuses }) => ({
      id: rollout.id,
      ref: rollout.ref,
      version: rollout.version,
      state: rollout.progress.state,
      devices: [...statuses.values()].reduce((sum, n) => sum + n, 0),
      healthy: statuses.get("healthy") ?? 0,
      failed: statuses.get("failed") ?? 0,
      rolledBack: statuses.get("rolled-back") ?? 0,
    })),
  };
}

/** Fetches the counts (aggregate queries) and summarises them. */
export async function readFleetSummary(store: FleetStore): Promise<FleetSummary> {
  const statuses = await store.rolloutStatusCounts();
  return summarizeFleet(
    await store.deviceCounts(),
    (await store.listRollouts()).map((rollout) => ({ rollout, statuses: statuses.get(rollout.id) ?? new Map() })),
  );
}
