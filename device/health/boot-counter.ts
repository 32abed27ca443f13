/**
 * The greenboot boot counter in GRUB's environment block (DESIGN.md 5.5): armed with
 * `boot_counter=N boot_success=0` when a new deployment is about to boot, decremented by
 * grub.cfg on each boot (falling back to the previous deployment when it runs out), and
 * cleared ("blessed") once the health checks passed. Kept in two blocks, grubenv and a copy
 * beside it, each replaced whole, so a power cut or a bad block in one leaves the other.
 */
import { mkdir, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fsyncPath } from "../../shared/fs/atomic-write.ts";
import { runProgram } from "../../shared/process/run.ts";
import { AptOstreeError } from "../../shared/errors.ts";

export interface BootCounter {
  arm(tries: number): Promise<void>;
  bless(): Promise<void>;
}

export class BootCounterError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_BOOT_COUNTER", message, { cause });
  }
}

/** The second block GRUB reads when grubenv is missing or unreadable (08_apt-ostree-counter). */
export function counterCopyPath(grubenv: string): string {
  return join(dirname(grubenv), "apt-ostree.env");
}

async function grubEditenv(file: string, argv: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  const result = await runProgram("grub-editenv", [file, ...argv]).catch((error: NodeJS.ErrnoException) => {
    throw new BootCounterError(`cannot update the boot counter in ${file}: ${error.code === "ENOENT" ? "grub-editenv is not installed (apt-get install grub-common)" : error.message}`, error);
  });
  return { ok: result.exitCode === 0, stdout: result.stdout, stderr: result.stderr || `grub-editenv exited ${result.exitCode}` };
}

/**
 * Replaces the environment block `file` whole: its readable variables (none when it is missing
 * or unreadable) with `set` applied and `unset` removed, written aside with grub-editenv, synced
 * and renamed over it, so a power cut leaves the old block or the new one, never a torn one
 * (grub-editenv itself rewrites a file in place).
 */
async function replaceBlock(file: string, set: Record<string, string>, unset: string[]): Promise<void> {
  const current = await grubEditenv(file, ["list"]).catch(() => ({ ok: false, stdout: "" }));
  const vars = new Map<string, string>();
  if (current.ok) {
    for (const line of current.stdout.split("\n")) {
      const at = line.indexOf("=");
      if (at > 0) vars.set(line.slice(0, at), line.slice(at + 1));
    }
  }
  for (const name of unset) vars.delete(name);
  for (const [name, value] of Object.entries(set)) vars.set(name, value);
  const tmp = `${file}.new`;
  await mkdir(dirname(file), { recursive: true });
  await rm(tmp, { force: true });
  for (const argv of [["create"], ...(vars.size > 0 ? [["set", ...[...vars].map(([k, v]) => `${k}=${v}`)]] : [])]) {
    const result = await grubEditenv(tmp, argv);
    if (!result.ok) throw new BootCounterError(`cannot update the boot counter in ${file}: ${result.stderr}`);
  }
  await fsyncPath(tmp);
  await rename(tmp, file);
  await fsyncPath(dirname(file));
}

/** Both blocks, the copy first: until grubenv is replaced too, GRUB reads grubenv as it was. */
async function replaceBoth(grubenv: string, set: Record<string, string>, unset: string[]): Promise<void> {
  await replaceBlock(counterCopyPath(grubenv), set, unset);
  await replaceBlock(grubenv, set, unset);
}

export function grubenvBootCounter(file: string): BootCounter {
  return {
    arm: (tries) => replaceBoth(file, { boot_counter: String(tries), boot_success: "0" }, []),
    bless: () => replaceBoth(file, { boot_success: "1" }, ["boot_counter"]),
  };
}
