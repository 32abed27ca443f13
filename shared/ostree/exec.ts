import { execa } from "execa";
import { AptOstreeError } from "../errors.ts";

/** `ostree` exited non-zero: carries the argv and ostree's own message. */
export class OstreeError extends AptOstreeError {
  readonly argv: string[];
  readonly stderr: string;
  readonly exitCode: number | undefined;

  constructor(argv: string[], exitCode: number | undefined, stderr: string, cause?: unknown) {
    const detail = stderr.trim().split("\n").filter(Boolean).pop() ?? `exit code ${exitCode}`;
    super("E_OSTREE", `ostree ${argv.slice(0, 2).join(" ")} failed: ${detail}`, { cause });
    this.argv = argv;
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

export interface OstreeRunOptions {
  /** Environment additions (e.g. OSTREE_SYSROOT_DEBUG). */
  env?: Record<string, string>;
  signal?: AbortSignal;
}

/** Runs the real `ostree` binary and returns its stdout; a non-zero exit becomes an OstreeError. */
export async function runOstree(argv: string[], options: OstreeRunOptions = {}): Promise<string> {
  try {
    const result = await execa("ostree", argv, {
      env: options.env,
      cancelSignal: options.signal,
      stripFinalNewline: true,
      lines: false,
    });
    return result.stdout;
  } catch (error) {
    const failure = error as { exitCode?: number; stderr?: string; code?: string; shortMessage?: string };
    if (failure.code === "ENOENT") {
      throw new AptOstreeError("E_OSTREE_MISSING", "the 'ostree' binary is not installed (apt-get install ostree)", { cause: error });
    }
    throw new OstreeError(argv, failure.exitCode, failure.stderr ?? failure.shortMessage ?? "", error);
  }
}
