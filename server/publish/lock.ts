import { open, readFile, rm } from "node:fs/promises";
import { AptOstreeError } from "../../shared/errors.ts";
import { isProcessAlive } from "../../shared/process-alive.ts";

export class RepoLockedError extends AptOstreeError {
  constructor(path: string, pid: number) {
    super("E_REPO_LOCKED", `another publish (pid ${pid}) holds ${path}; wait for it to finish`);
  }
}

/**
 * An exclusive lock file holding the owner's pid. A lock left by a process that no longer
 * exists (killed mid-publish) is taken over, so a rerun can complete the publish.
 */
export async function acquireLock(path: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, "wx", 0o644);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return () => rm(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number((await readFile(path, "utf8").catch(() => "")).trim());
      if (Number.isInteger(owner) && owner > 0 && isProcessAlive(owner)) throw new RepoLockedError(path, owner);
      await rm(path, { force: true });
    }
  }
  throw new AptOstreeError("E_REPO_LOCKED", `cannot take the lock ${path}`);
}
