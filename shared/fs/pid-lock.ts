import { randomBytes } from "node:crypto";
import { link, readFile, writeFile } from "node:fs/promises";
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
  // Written whole under a name of our own, then linked into place: a contender never reads a lock
  // that exists but is still empty (and takes it for a dead owner's).
  const mine = `${path}.${process.pid}.${randomBytes(4).toString("hex")}`;
  await writeFile(mine, `${process.pid} ${bootId}\n`, { mode: 0o644 });
  try {
    for (let attempt = 0; attempt < 100; attempt++) {
      try {
        await link(mine, path);
        return () => removeFile(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const text = await readFile(path, "utf8").catch(() => "");
      const owner = parseOwner(text);
      if (text !== "" && isOwnerAlive(owner, bootId)) throw new LockHeldError(path, owner.pid, what);
      if (!(await breakStaleLock(path, text, mine, bootId))) await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
    }
  } finally {
    await removeFile(mine);
  }
  throw new AptOstreeError("E_LOCKED", `cannot take the lock ${path}`);
}

/**
 * Removes a dead owner's lock, once: only the contender that holds `<lock>.break` may, and only
 * if the lock still says what was judged dead. Without that, two contenders that both saw the
 * dead lock could each remove it, the second removing the first's fresh one, and both would hold it.
 */
async function breakStaleLock(path: string, dead: string, mine: string, bootId: string): Promise<boolean> {
  const breaker = `${path}.break`;
  try {
    await link(mine, breaker);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    // A breaker that died while breaking (a moment's window) must not block everyone for ever.
    const text = await readFile(breaker, "utf8").catch(() => "");
    if (text !== "" && !isOwnerAlive(parseOwner(text), bootId) && (await readFile(breaker, "utf8").catch(() => "")) === text) await removeFile(breaker);
    return false;
  }
  try {
    if ((await readFile(path, "utf8").catch(() => null)) === dead) await removeFile(path);
    return true;
  } finally {
    await removeFile(breaker);
  }
}
