import { pino, destination, type Logger } from "pino";

export type { Logger } from "pino";

export interface LoggerOptions {
  /** Component name carried on every line (`compose`, `publish`, `agent`...). */
  name: string;
  /** pino level; default `APT_OSTREE_LOG_LEVEL` or `info`. */
  level?: string;
}

/** One JSON event per line on stderr: stdout is kept for command output. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    { name: options.name, level: options.level ?? process.env.APT_OSTREE_LOG_LEVEL ?? "info", base: { pid: process.pid } },
    destination({ dest: 2, sync: true }),
  );
}

/** A logger that drops everything, for tests and library callers that pass none. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
