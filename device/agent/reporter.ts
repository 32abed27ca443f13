/**
 * Signs and publishes reports. Counters only grow across restarts without a disk write per
 * report: they are handed out below a ceiling kept in the state file, raised a block at a time;
 * after a restart counting resumes at the ceiling, above anything sent. A report that could not
 * be published (broker away) is kept and sent again on reconnect.
 */
import type { Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { fitReport, signReport, type Report } from "../../shared/wire/report.ts";

/** Report counters reserved per write of the state file. */
export const COUNTER_BLOCK = 64;

export interface ReporterOptions {
  key: Ed25519KeyPair;
  publish: (payload: string) => Promise<void>;
  /** The persisted ceiling. */
  ceiling: () => number;
  /** Persists a higher ceiling before counters under it are used. */
  raiseCeiling: (to: number) => Promise<void>;
  now: () => Date;
}

export class Reporter {
  private last: number | null = null;
  private unsent: string | null = null;

  constructor(private readonly options: ReporterOptions) {}

  async send(report: Report): Promise<void> {
    this.last ??= this.options.ceiling();
    if (this.last >= this.options.ceiling()) await this.options.raiseCeiling(this.last + COUNTER_BLOCK);
    const counter = ++this.last;
    const payload = signReport(fitReport({ ...report, counter, sent: this.options.now().toISOString() }), this.options.key);
    try {
      await this.options.publish(payload);
      this.unsent = null;
    } catch {
      this.unsent = payload;
    }
  }

  /** Re-sends the report kept while the link was down; false when there was none. */
  async flush(): Promise<boolean> {
    if (!this.unsent) return false;
    const payload = this.unsent;
    this.unsent = null;
    await this.options.publish(payload).catch(() => (this.unsent = payload));
    return true;
  }
}
