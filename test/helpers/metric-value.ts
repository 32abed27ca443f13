import type { Metrics } from "../../server/http/metrics.ts";

/** Sum of a metric's series whose labels include `labels`, read from the rendered text. */
export function metricValue(metrics: Metrics, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let total = 0;
  for (const line of metrics.render().split("\n")) {
    const match = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (match && match[1] === name && wanted.every((pair) => (match[2] ?? "").includes(pair))) total += Number(match[3]);
  }
  return total;
}
