/**
 * Room kept for the agent's own state on a full disk: a file of zeros in the state directory
 * (`space-reserve`, 1 MiB) that the agent gives back when its state file cannot be written for
 * want of space, so it can still write "waiting for space" and report it, and makes again once
 * the disk has room. Databases keep such ballast for the same reason: the write that says what
 * went wrong must not be the one that fails.
 */
import { constants } from "node:fs";
import { open, rename, rm, stat, statfs } from "node:fs/promises";
import { join } from "node:path";

export const RESERVE_BYTES = 1024 * 1024;
/** The reserve is made again only with this much free beyond it: never the write that fills the disk. */
const REMAKE_FREE_BYTES = 64 * 1024 * 1024;

export class SpaceReserve {
  readonly file: string;

  constructor(stateDir: string) {
    this.file = join(stateDir, "space-reserve");
  }

  /**
   * Gives the reserve back; true when there was one. The directory is synced so ext4 commits the
   * unlink: its blocks are free for the next write only then.
   */
  async release(): Promise<boolean> {
    if (!(await stat(this.file).catch(() => null))) return false;
    await rm(this.file, { force: true });
    const dir = await open(join(this.file, ".."), constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    return true;
  }

  /** Makes the reserve when it is missing and the disk has room; false when it could not (yet). */
  async ensure(): Promise<boolean> {
    const existing = await stat(this.file).catch(() => null);
    if (existing?.size === RESERVE_BYTES) return true;
    const fs = await statfs(join(this.file, ".."));
    if (fs.bavail * fs.bsize < REMAKE_FREE_BYTES + RESERVE_BYTES) return false;
    const temporary = `${this.file}.new`;
    const handle = await open(temporary, "w", 0o600);
    try {
      // Zeros written, not a sparse file: the blocks must be the reserve's.
      const zeros = Buffer.alloc(64 * 1024);
      for (let written = 0; written < RESERVE_BYTES; written += zeros.length) await handle.write(zeros);
      await handle.sync();
    } catch (error) {
      await handle.close();
      await rm(temporary, { force: true });
      throw error;
    }
    await handle.close();
    await rename(temporary, this.file);
    return true;
  }
}
