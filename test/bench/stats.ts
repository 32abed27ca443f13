/** The nearest-rank percentile of values sorted ascending (p 50 of an odd count is the median). */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
