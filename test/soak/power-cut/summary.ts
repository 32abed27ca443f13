/** The per-phase table of a power-cut campaign (docs/BENCHMARKS.md quotes it). */
import type { TrialResult } from "./trial.ts";

function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

export function summarize(results: TrialResult[]): string {
  const phases = [...new Set(results.map((r) => r.phase))];
  const lines = ["| phase | trials | passed | outcomes | cut after (last report) | boots after cut (median/max) | recovery s (median/max) |", "|---|---|---|---|---|---|---|"];
  for (const phase of phases) {
    const of = results.filter((r) => r.phase === phase);
    const tally = (key: (r: TrialResult) => string) => Object.entries(of.reduce<Record<string, number>>((acc, r) => ((acc[key(r)] = (acc[key(r)] ?? 0) + 1), acc), {})).map(([k, n]) => `${k} ${n}`).join(", ");
    const boots = of.map((r) => r.bootsAfterCut);
    const recovery = of.map((r) => r.recoverySeconds);
    lines.push(`| ${phase} | ${of.length} | ${of.filter((r) => r.passed).length} | ${tally((r) => r.outcome)} | ${tally((r) => r.cutAfter)} | ${median(boots)}/${Math.max(...boots)} | ${median(recovery)}/${Math.max(...recovery)} |`);
  }
  return lines.join("\n");
}
