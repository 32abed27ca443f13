/** What a fuzz campaign reports: cases tried, refusals by reason, peak memory, failures with their seed. */
export interface FuzzFailure {
  seed: number;
  case: number;
  what: string;
  /** Enough to replay it: the input in hex or a description. */
  input: string;
}

export interface FuzzReport {
  suite: string;
  seed: number;
  cases: number;
  seconds: number;
  refusals: Record<string, number>;
  peakRssBytes: number;
  failures: FuzzFailure[];
}

export interface FuzzRunOptions {
  seed: number;
  /** Stop after this many cases... */
  cases?: number;
  /** ...or at this time (ms since the epoch), whichever comes first. */
  deadline?: number;
  log?: (line: string) => void;
}

export function countRefusal(report: FuzzReport, reason: string, n = 1): void {
  report.refusals[reason] = (report.refusals[reason] ?? 0) + n;
}

export function renderReport(report: FuzzReport): string {
  const refusals = Object.entries(report.refusals).sort((a, b) => b[1] - a[1]).map(([k, v]) => `    ${k}: ${v}`).join("\n");
  return [
    `${report.suite}: ${report.cases} cases in ${report.seconds.toFixed(0)} s (seed ${report.seed}), peak RSS ${(report.peakRssBytes / 1048576).toFixed(1)} MiB, ${report.failures.length} failures`,
    refusals ? `  refusals by reason:\n${refusals}` : "  no refusals counted",
    ...report.failures.slice(0, 20).map((f) => `  FAIL case ${f.case} (seed ${f.seed}): ${f.what}; input ${f.input.slice(0, 400)}`),
  ].join("\n");
}
