import { runProgram } from "../process/run.ts";
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
  let result;
  try {
    // The C locale: callers read ostree's messages (a full disk is told by its words, device/update/stage.ts).
    result = await runProgram("ostree", argv, { env: { LC_ALL: "C", ...options.env }, signal: options.signal });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new AptOstreeError("E_OSTREE_MISSING", "the 'ostree' binary is not installed (apt-get install ostree)", { cause: error });
    }
    throw new OstreeError(argv, undefined, (error as Error).message, error);
  }
  if (result.exitCode !== 0) throw new OstreeError(argv, result.exitCode ?? undefined, result.stderr || (result.signal ? `killed by ${result.signal}` : ""));
  return result.stdout;
}
