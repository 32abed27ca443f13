import { open, readFile } from "node:fs/promises";
import { AptOstreeError } from "../errors.ts";
import { isOwnerAlive, readBootId } from "../process-alive.ts";
import { removeFile } from "./remove-file.ts";

export class LockHeldError extends AptOstreeError {
  readonly pid: number;
  constructor(path: string, pid: number, what: string) {
    super("E_LOCKED", `${what} (pid ${pid}) holds ${path}; wait for it to finish`);
    this.pid = pid;
  }
}

export interface PidLockOptions {
  /** Where this boot's id is read (default the kernel's); the simulated devices of the tests have their own. */
  bootIdFile?: string;
}

/** "<pid> <boot id>": the pid means nothing in another boot, where it is some other process or none. */
function parseOwner(text: string): { pid: number; bootId: string | null } {
  const [pid, bootId] = text.trim().split(/\s+/);
  return { pid: Number(pid), bootId: bootId ?? null };
}

/**
 * An exclusive lock file holding the owner's pid and the boot it was taken in. A lock left by a
 * process that no longer exists (killed with -9) is taken over, and so is one left by an earlier
 * boot (a power loss or a watchdog reset skips the release, and a lock under /var outlives the
 * boot, while the next boot hands the same pids out again). `what` names the usual holder in
 * the error.
 */
export async function acquirePidLock(path: string, what: string, options: PidLockOptions = {}): Promise<() => Promise<void>> {
  const bootId = await readBootId(options.bootIdFile);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, "wx", 0o644);
      await handle.writeFile(`${process.pid} ${bootId}\n`);
      await handle.close();
      return () => removeFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = parseOwner(await readFile(path, "utf8").catch(() => ""));
      if (isOwnerAlive(owner, bootId)) throw new LockHeldError(path, owner.pid, what);
      await removeFile(path);
    }
  }
  throw new AptOstreeError("E_LOCKED", `cannot take the lock ${path}`);
}
