/**
 * The greenboot boot counter in GRUB's environment block (DESIGN.md 5.5): armed with
 * `boot_counter=N boot_success=0` when a new deployment is about to boot, decremented by
 * grub.cfg on each boot (falling back to the previous deployment when it runs out), and
 * cleared ("blessed") once the health checks passed.
 */
import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
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

async function editenv(file: string, args: string[]): Promise<void> {
  const run = async (argv: string[]) => {
    const result = await runProgram("grub-editenv", argv).catch((error: NodeJS.ErrnoException) => {
      throw new BootCounterError(`cannot update the boot counter in ${file}: ${error.code === "ENOENT" ? "grub-editenv is not installed (apt-get install grub-common)" : error.message}`, error);
    });
    if (result.exitCode !== 0) throw new BootCounterError(`cannot update the boot counter in ${file}: ${result.stderr || `grub-editenv exited ${result.exitCode}`}`);
  };
  if (!(await stat(file).catch(() => null))) {
    await mkdir(dirname(file), { recursive: true });
    await run([file, "create"]);
  }
  await run([file, ...args]);
}

export function grubenvBootCounter(file: string): BootCounter {
  return {
    arm: (tries) => editenv(file, ["set", `boot_counter=${tries}`, "boot_success=0"]),
    bless: async () => {
      await editenv(file, ["unset", "boot_counter"]);
      await editenv(file, ["set", "boot_success=1"]);
    },
  };
}
