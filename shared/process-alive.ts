import { readFile } from "node:fs/promises";

/** True when a process with this pid exists (signal 0 probes without delivering anything). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export const KERNEL_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id";

/** This boot's id ("" when the file cannot be read). */
export async function readBootId(file: string = KERNEL_BOOT_ID_FILE): Promise<string> {
  return (await readFile(file, "utf8").catch(() => "")).trim();
}

/**
 * Whether a process recorded by pid and boot id still runs. A pid means nothing in another boot,
 * where it is some other process or none: files under /var and the cache outlive a power loss,
 * and the next boot hands the same pids out again. An unknown boot id falls back to the pid.
 */
export function isOwnerAlive(owner: { pid: number; bootId: string | null }, currentBootId: string): boolean {
  const sameBoot = owner.bootId === null || owner.bootId === "" || currentBootId === "" || owner.bootId === currentBootId;
  return sameBoot && Number.isInteger(owner.pid) && owner.pid > 0 && isProcessAlive(owner.pid);
}
