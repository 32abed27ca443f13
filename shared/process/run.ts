/**
 * Runs a program and collects its output, on node:child_process alone. The device agent must stay
 * lean (execa costs ~9 MB of resident memory in the bundle), so code the agent loads uses this;
 * the server's long pipelines (mmdebstrap with live progress) keep execa.
 */
import { spawn } from "node:child_process";

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** Kill (SIGKILL) after this long and report `timedOut`. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** "inherit" passes the terminal through (an editor, a reboot); output is then not collected. */
  stdio?: "pipe" | "inherit";
  /** Text written to the program's stdin (closed after it); without it stdin is /dev/null. */
  input?: string;
  /** `env` is the whole environment, not additions to this process's. */
  cleanEnv?: boolean;
}

export interface RunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr interleaved as they arrived. */
  all: string;
  timedOut: boolean;
}

/** Resolves with how the program ended; rejects only when it cannot start (ENOENT, EACCES). */
export function runProgram(file: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env = options.cleanEnv ? (options.env ?? {}) : options.env ? { ...process.env, ...options.env } : process.env;
    const stdin = options.input === undefined ? "ignore" : "pipe";
    const child = spawn(file, args, { env, stdio: options.stdio === "inherit" ? "inherit" : [stdin, "pipe", "pipe"], signal: options.signal });
    if (options.input !== undefined && child.stdin) {
      // A program that exits without reading all of it closes the pipe: not an error of ours.
      child.stdin.on("error", () => undefined);
      child.stdin.end(options.input);
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const all: Buffer[] = [];
    child.stdout?.on("data", (chunk: Buffer) => (out.push(chunk), all.push(chunk)));
    child.stderr?.on("data", (chunk: Buffer) => (err.push(chunk), all.push(chunk)));
    let timedOut = false;
    const timer = options.timeoutMs === undefined ? null : setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, options.timeoutMs);
    child.once("error", (error) => {
      if (timer) clearTimeout(timer);
      reject(error);
    });
    child.once("close", (exitCode, signal) => {
      if (timer) clearTimeout(timer);
      const text = (chunks: Buffer[]) => Buffer.concat(chunks).toString("utf8").replace(/\n$/, "");
      resolve({ exitCode, signal, stdout: text(out), stderr: text(err), all: text(all), timedOut });
    });
  });
}
