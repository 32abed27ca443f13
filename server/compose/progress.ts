/**
 * Compose progress: a live line on a terminal, pino events otherwise (one per phase, and
 * download counts at most every few seconds).
 */
import type { Logger } from "../../shared/log.ts";

export interface ComposeProgress {
  phase(name: string, detail?: string): void;
  packages(fetched: number, total: number): void;
  done(): void;
}

export function createComposeProgress(log: Logger, stream: NodeJS.WriteStream = process.stderr): ComposeProgress {
  return stream.isTTY ? new TerminalProgress(stream) : new LogProgress(log);
}

class TerminalProgress implements ComposeProgress {
  private current = "";
  private readonly started = Date.now();
  constructor(private readonly stream: NodeJS.WriteStream) {}

  phase(name: string, detail?: string): void {
    this.current = name;
    this.render(detail ?? "");
  }

  packages(fetched: number, total: number): void {
    this.render(`fetched ${fetched}/${total} packages`);
  }

  done(): void {
    this.stream.write("\n");
  }

  private render(detail: string): void {
    const elapsed = Math.round((Date.now() - this.started) / 1000);
    const line = `[${String(Math.floor(elapsed / 60)).padStart(2, "0")}:${String(elapsed % 60).padStart(2, "0")}] ${this.current}${detail ? `: ${detail}` : ""}`;
    this.stream.write(`\r\x1b[2K${line.slice(0, (this.stream.columns ?? 100) - 1)}`);
  }
}

class LogProgress implements ComposeProgress {
  private lastPackagesLog = 0;
  constructor(private readonly log: Logger) {}

  phase(name: string, detail?: string): void {
    this.log.info({ event: "compose.phase", phase: name, detail }, `${name}${detail ? `: ${detail}` : ""}`);
  }

  packages(fetched: number, total: number): void {
    const now = Date.now();
    if (now - this.lastPackagesLog < 5000 && fetched < total) return;
    this.lastPackagesLog = now;
    this.log.info({ event: "compose.packages", fetched, total }, `fetched ${fetched}/${total} packages`);
  }

  done(): void {}
}
