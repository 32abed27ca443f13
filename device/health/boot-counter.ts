/**
 * The greenboot boot counter in GRUB's environment block (DESIGN.md 5.5): armed with
 * `boot_counter=N boot_success=0` when a new deployment is about to boot, decremented by
 * grub.cfg on each boot (falling back to the previous deployment when it runs out), and
 * cleared ("blessed") once the health checks passed.
 */
import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { execa } from "execa";
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
  try {
    if (!(await stat(file).catch(() => null))) {
      await mkdir(dirname(file), { recursive: true });
      await execa("grub-editenv", [file, "create"]);
    }
    await execa("grub-editenv", [file, ...args]);
  } catch (error) {
    const detail = (error as { code?: string }).code === "ENOENT" ? "grub-editenv is not installed (apt-get install grub-common)" : ((error as { stderr?: string }).stderr ?? (error as Error).message);
    throw new BootCounterError(`cannot update the boot counter in ${file}: ${detail}`, error);
  }
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
