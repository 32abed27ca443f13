import { open, readFile, rm } from "node:fs/promises";
import { AptOstreeError } from "../errors.ts";
import { isProcessAlive } from "../process-alive.ts";

export class LockHeldError extends AptOstreeError {
  readonly pid: number;
  constructor(path: string, pid: number, what: string) {
    super("E_LOCKED", `${what} (pid ${pid}) holds ${path}; wait for it to finish`);
    this.pid = pid;
  }
}

/**
 * An exclusive lock file holding the owner's pid. A lock left by a process that no longer
 * exists (killed with -9) is taken over. `what` names the usual holder in the error.
 */
export async function acquirePidLock(path: string, what: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, "wx", 0o644);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return () => rm(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number((await readFile(path, "utf8").catch(() => "")).trim());
      if (Number.isInteger(owner) && owner > 0 && isProcessAlive(owner)) throw new LockHeldError(path, owner, what);
      await rm(path, { force: true });
    }
  }
  throw new AptOstreeError("E_LOCKED", `cannot take the lock ${path}`);
}
