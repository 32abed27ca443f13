/**
 * A disk with a volatile write cache, after the power went: qemu's `blklogwrites` driver logs
 * every write and flush the guest sends, in the dm-log-writes format, and `replayDurableWrites`
 * applies to a copy of the disk as it was before the run only what the disk had to keep: the
 * writes a later flush covered, and FUA writes. Everything written after the guest's last flush
 * is lost, as on a disk whose cache empties with the power. (ostree's destructive tests and
 * xfstests' log-writes replay use the same log to the same end.)
 *
 * Format (Linux's drivers/md/dm-log-writes.c, qemu's block/blklogwrites.c), little-endian: a
 * super (magic, version 1, entry count, sector size) in the first log sector, then per entry a
 * header sector (sector, nr_sectors, flags, data_len) followed by its data sectors. The entry
 * count in the super is only brought up to date now and then, so after a kill the entries are
 * read until the first empty header (the log file starts empty: sparse zeros).
 */
import { open, type FileHandle } from "node:fs/promises";
import { AptOstreeError } from "../shared/errors.ts";

export const WRITE_LOG_MAGIC = 0x6a736677736872n;
export const LOG_FLUSH = 1n;
export const LOG_FUA = 2n;
export const LOG_DISCARD = 4n;
export const LOG_MARK = 8n;

export class WriteLogError extends AptOstreeError {
  constructor(message: string) {
    super("E_WRITE_LOG", message);
  }
}

export interface WriteLogEntry {
  /** Byte offset on the disk. */
  offset: number;
  length: number;
  flags: bigint;
  /** Byte offset of the data in the log. */
  dataAt: number;
}

export interface ReplayStats {
  entries: number;
  flushes: number;
  writes: number;
  /** Writes applied: before the last flush, or FUA. */
  applied: number;
  /** Writes dropped: after the last flush and not FUA. */
  dropped: number;
  droppedBytes: number;
}

/** The log's entries in order (flushes included), read until the first empty header. */
export async function readWriteLog(log: FileHandle): Promise<WriteLogEntry[]> {
  const header = Buffer.alloc(32);
  await log.read(header, 0, 32, 0);
  // qemu writes the super at the first flush entry: a log cut before it has entries of 512-byte sectors, none covered.
  if (header.every((byte) => byte === 0)) return readEntries(log, 512);
  if (header.readBigUInt64LE(0) !== WRITE_LOG_MAGIC) throw new WriteLogError("not a dm-log-writes log (bad magic)");
  if (header.readBigUInt64LE(8) !== 1n) throw new WriteLogError(`unknown dm-log-writes version ${header.readBigUInt64LE(8)}`);
  const sectorSize = header.readUInt32LE(24);
  if (sectorSize < 512 || sectorSize > 65536 || (sectorSize & (sectorSize - 1)) !== 0) throw new WriteLogError(`bad log sector size ${sectorSize}`);
  return readEntries(log, sectorSize);
}

/** Every flag qemu's and Linux's writers set: anything else is a misparse, not a log. */
const KNOWN_FLAGS = 0x1fn;

async function readEntries(log: FileHandle, sectorSize: number): Promise<WriteLogEntry[]> {
  const header = Buffer.alloc(32);
  const { size } = await log.stat();
  const entries: WriteLogEntry[] = [];
  let at = sectorSize;
  while (at + 32 <= size) {
    const { bytesRead } = await log.read(header, 0, 32, at);
    if (bytesRead < 32) break;
    const sector = header.readBigUInt64LE(0);
    const sectors = header.readBigUInt64LE(8);
    const flags = header.readBigUInt64LE(16);
    if (sector === 0n && sectors === 0n && flags === 0n) break;
    if ((flags & ~KNOWN_FLAGS) !== 0n) throw new WriteLogError(`entry ${entries.length} at ${at} has unknown flags ${flags}: not a write log, or a misparse`);
    const length = Number(sectors) * sectorSize;
    if (!Number.isSafeInteger(length) || at + sectorSize + length > size) throw new WriteLogError(`entry ${entries.length} at ${at} runs past the log's end`);
    entries.push({ offset: Number(sector) * sectorSize, length: (flags & LOG_DISCARD) !== 0n ? 0 : length, flags, dataAt: at + sectorSize });
    at += sectorSize + ((flags & LOG_DISCARD) !== 0n ? 0 : length);
  }
  return entries;
}

/**
 * Applies to `target` (the disk as it was when the log started) the writes a disk with a volatile
 * cache must have kept. In log order, a later durable write overwrites an earlier one; the writes
 * after the last flush are all left out. (A real cache may also keep some of them, in any order:
 * a seeded subset is a later refinement.)
 */
export async function replayDurableWrites(logFile: string, targetFile: string): Promise<ReplayStats> {
  const log = await open(logFile, "r");
  let target: FileHandle | null = null;
  try {
    target = await open(targetFile, "r+");
    const { size: targetSize } = await target.stat();
    const entries = await readWriteLog(log);
    for (const entry of entries) {
      if (entry.offset + entry.length > targetSize) throw new WriteLogError(`a write at ${entry.offset} (${entry.length} bytes) runs past the disk's ${targetSize} bytes: a misparse`);
    }
    let lastFlush = -1;
    entries.forEach((entry, index) => {
      if ((entry.flags & LOG_FLUSH) !== 0n) lastFlush = index;
    });
    const stats: ReplayStats = { entries: entries.length, flushes: 0, writes: 0, applied: 0, dropped: 0, droppedBytes: 0 };
    for (const [index, entry] of entries.entries()) {
      if ((entry.flags & LOG_FLUSH) !== 0n) stats.flushes++;
      if (entry.length === 0 || (entry.flags & (LOG_DISCARD | LOG_MARK)) !== 0n) continue;
      stats.writes++;
      if (index < lastFlush || (entry.flags & LOG_FUA) !== 0n) {
        await copyRange(log, entry.dataAt, target, entry.offset, entry.length);
        stats.applied++;
      } else {
        stats.dropped++;
        stats.droppedBytes += entry.length;
      }
    }
    // Writes and not one flush: the VM's cache mode swallowed the flushes (cache=unsafe), and the replay would drop everything.
    if (stats.writes > 0 && stats.flushes === 0 && entries.length > 100) throw new WriteLogError(`${stats.writes} writes and no flush in the log: was the disk opened cache=unsafe? (flushes never reach blklogwrites then)`);
    await target.sync();
    return stats;
  } finally {
    await log.close();
    await target?.close();
  }
}

async function copyRange(from: FileHandle, fromAt: number, to: FileHandle, toAt: number, length: number): Promise<void> {
  const chunk = Buffer.alloc(Math.min(length, 4 * 1024 * 1024));
  for (let done = 0; done < length; ) {
    const size = Math.min(chunk.length, length - done);
    const { bytesRead } = await from.read(chunk, 0, size, fromAt + done);
    if (bytesRead !== size) throw new WriteLogError(`short read of the log at ${fromAt + done}`);
    await to.write(chunk, 0, size, toAt + done);
    done += size;
  }
}

/**
 * Follows a log qemu is writing, entry by entry from where it last stopped: whether its newest
 * entry is a write no flush covers yet, the moment a volatile cache has something to lose.
 */
export class WriteLogTail {
  private at = -1;
  private sectorSize = 512;
  private last: bigint | null = null;

  constructor(private readonly file: string) {}

  /** Reads what was appended since the last call; true when the newest entry is an unflushed write. */
  async unflushedWriteLast(): Promise<boolean> {
    const log = await open(this.file, "r");
    try {
      const header = Buffer.alloc(32);
      if (this.at < 0) {
        await log.read(header, 0, 32, 0);
        if (header.readBigUInt64LE(0) === WRITE_LOG_MAGIC) this.sectorSize = header.readUInt32LE(24);
        this.at = this.sectorSize;
      }
      const { size } = await log.stat();
      while (this.at + 32 <= size) {
        const { bytesRead } = await log.read(header, 0, 32, this.at);
        if (bytesRead < 32) break;
        const sectors = header.readBigUInt64LE(8);
        const flags = header.readBigUInt64LE(16);
        if (header.readBigUInt64LE(0) === 0n && sectors === 0n && flags === 0n) break;
        this.last = flags;
        this.at += this.sectorSize * (1 + ((flags & LOG_DISCARD) !== 0n ? 0 : Number(sectors)));
      }
      return this.last !== null && (this.last & (LOG_FLUSH | LOG_DISCARD | LOG_MARK)) === 0n;
    } finally {
      await log.close();
    }
  }
}
