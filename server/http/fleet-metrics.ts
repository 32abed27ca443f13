/**
 * The fleet gauges of `/metrics`, set at each scrape from the store's aggregate counts (never
 * from every device record). A label seen at an earlier scrape and absent now reads 0, so a
 * state that emptied — the last pending device deleted — does not keep its old count.
 */
import type { FleetStore } from "../fleet/store.ts";
import type { Metrics } from "./metrics.ts";

type Gauge = (value: number, labels?: Record<string, string>) => void;

/** Sets every label of a gauge from counts, zeroing the labels that disappeared. */
function gaugeFamily(gauge: Gauge, label: string): (counts: Iterable<[string, number]>) => void {
  const seen = new Set<string>();
  return (counts) => {
    const now = new Map(counts);
    for (const key of seen) if (!now.has(key)) gauge(0, { [label]: key });
    for (const [key, value] of now) {
      seen.add(key);
      gauge(value, { [label]: key });
    }
  };
}

export function fleetGauges(metrics: Metrics, store: FleetStore): () => Promise<void> {
  const byState = gaugeFamily(metrics.gauge("aptostree_devices", "Accepted devices, by last reported state"), "state");
  const byEnrollment = gaugeFamily(metrics.gauge("aptostree_devices_enrollment", "Devices, by enrollment state"), "enrollment");
  const rollouts = gaugeFamily(metrics.gauge("aptostree_rollouts", "Rollouts, by state"), "state");
  return async () => {
    const counts = await store.deviceCounts();
    byState(Object.entries(counts.byState));
    byEnrollment(Object.entries(counts.byEnrollment));
    const byRolloutState = new Map<string, number>();
    for (const rollout of await store.listRollouts()) byRolloutState.set(rollout.progress.state, (byRolloutState.get(rollout.progress.state) ?? 0) + 1);
    rollouts(byRolloutState);
  };
}
