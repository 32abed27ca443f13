/**
 * Greenboot-like health checks: every executable in `required/` must exit 0, those in `wanted/`
 * only warn; each runs with a timeout and its output is kept (capped) for the report. Built-in
 * checks (no failed systemd units, the server reachable) are passed in as functions.
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { runProgram } from "../../shared/process/run.ts";

export interface HealthResult {
  name: string;
  kind: "required" | "wanted";
  ok: boolean;
  output: string;
}

export interface BuiltinCheck {
  name: string;
  kind: "required" | "wanted";
  run(): Promise<{ ok: boolean; output: string }>;
}

export interface HealthCheckOptions {
  /** Folder holding `required/` and `wanted/` (default /etc/apt-ostree/health.d). */
  dir: string;
  timeoutMs: number;
  builtins: BuiltinCheck[];
}

/** Output kept per check: the report schema's limit. */
export const MAX_CHECK_OUTPUT = 16_384;

async function executables(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const found: string[] = [];
  for (const name of names.sort()) {
    const info = await stat(join(dir, name)).catch(() => null);
    if (info?.isFile() && (info.mode & 0o111) !== 0) found.push(name);
  }
  return found;
}

async function runScript(path: string, timeoutMs: number): Promise<{ ok: boolean; output: string }> {
  const result = await runProgram(path, [], { timeoutMs }).catch((error: Error) => ({ exitCode: null, signal: null, all: error.message, timedOut: false }));
  const output = result.all.slice(-MAX_CHECK_OUTPUT);
  if (result.timedOut) return { ok: false, output: `${output}\n(timed out after ${timeoutMs / 1000} s)`.slice(-MAX_CHECK_OUTPUT) };
  if (result.exitCode !== 0) return { ok: false, output: `${output}${output ? "\n" : ""}(exit code ${result.exitCode ?? result.signal})`.slice(-MAX_CHECK_OUTPUT) };
  return { ok: true, output };
}

export async function runHealthChecks(options: HealthCheckOptions): Promise<HealthResult[]> {
  const results: HealthResult[] = [];
  for (const kind of ["required", "wanted"] as const) {
    for (const name of await executables(join(options.dir, kind))) {
      results.push({ name, kind, ...(await runScript(join(options.dir, kind, name), options.timeoutMs)) });
    }
  }
  for (const check of options.builtins) {
    const outcome = await check.run().catch((error: Error) => ({ ok: false, output: error.message }));
    results.push({ name: check.name, kind: check.kind, ok: outcome.ok, output: outcome.output.slice(-MAX_CHECK_OUTPUT) });
  }
  return results;
}

/** Built-in: no failed systemd units (only where systemd runs). */
export const systemdUnitsCheck: BuiltinCheck = {
  name: "systemd-units",
  kind: "required",
  async run() {
    const result = await runProgram("systemctl", ["--failed", "--plain", "--no-legend", "--no-pager"]);
    if (result.exitCode !== 0) return { ok: false, output: result.stderr || `systemctl exited ${result.exitCode}` };
    const failed = result.stdout.split("\n").filter(Boolean);
    return { ok: failed.length === 0, output: failed.length === 0 ? "no failed units" : `failed units:\n${failed.join("\n")}` };
  },
};
