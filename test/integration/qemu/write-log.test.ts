/**
 * The strict power cut's replay (qemu/write-log.ts) on logs written by qemu's own blklogwrites
 * driver (qemu-io, then abort(3) as a power cut would end qemu): what a flush covered and FUA
 * writes survive, the rest is gone.
 */
import { copyFile, open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replayDurableWrites, WriteLogError, WriteLogTail } from "../../../qemu/write-log.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;

beforeAll(async () => {
  dir = await makeTempDir("write-log");
});
afterAll(async () => removeTree(dir));

/** Runs qemu-io commands on `disk` through blklogwrites into `log`, ending with abort: no flush at exit. */
async function logged(name: string, commands: string[]): Promise<{ before: string; disk: string; log: string }> {
  const disk = join(dir, `${name}.raw`);
  const before = join(dir, `${name}.before.raw`);
  const log = join(dir, `${name}.log`);
  await execa("truncate", ["-s", "16M", disk]);
  await execa("truncate", ["-s", "64M", log]);
  await copyFile(disk, before);
    // writeback, as the VM's cache=none: qemu-io's default (writethrough) adds a flush of its own after writes.
  const result = await execa("qemu-io", ["-t", "writeback", "--image-opts", `driver=blklogwrites,file.driver=file,file.filename=${disk},log.driver=file,log.filename=${log},log-super-update-interval=1000000000`, ...commands.flatMap((c) => ["-c", c]), "-c", "abort"], { reject: false });
  expect(result.signal ?? result.exitCode).toBeTruthy();
  return { before, disk, log };
}

async function byteAt(file: string, offset: number): Promise<number> {
  const handle = await open(file, "r");
  try {
    const buffer = Buffer.alloc(1);
    await handle.read(buffer, 0, 1, offset);
    return buffer[0]!;
  } finally {
    await handle.close();
  }
}

describe("replayDurableWrites", () => {
  it("keeps what the last flush covered and drops the writes after it", async () => {
    const { before, disk, log } = await logged("flush", ["write -P 0xaa 4096 8192", "write -P 0xcc 4096 4096", "flush", "write -P 0xbb 1M 4096"]);
    // Without the cache, the disk itself has every write.
    expect(await byteAt(disk, 1024 * 1024)).toBe(0xbb);
    const stats = await replayDurableWrites(log, before);
    expect(stats).toMatchObject({ writes: 3, applied: 2, dropped: 1, droppedBytes: 4096, flushes: 1 });
    // In their order: the second write over the first's first half.
    expect(await byteAt(before, 4096)).toBe(0xcc);
    expect(await byteAt(before, 4096 + 8191)).toBe(0xaa);
    expect(await byteAt(before, 1024 * 1024)).toBe(0);
  });

  it("keeps a FUA write after the last flush (a log made by hand: qemu emulates FUA with a flush)", async () => {
    const sector = 512;
    const entries: Array<{ sector: number; data: Buffer | null; flags: number }> = [
      { sector: 0, data: Buffer.alloc(4096, 0x11), flags: 0 },
      { sector: 0, data: null, flags: 1 },
      { sector: 32, data: Buffer.alloc(4096, 0x33), flags: 0 },
      { sector: 4096, data: Buffer.alloc(4096, 0x44), flags: 2 },
    ];
    const parts: Buffer[] = [];
    const superBlock = Buffer.alloc(sector);
    superBlock.writeBigUInt64LE(0x6a736677736872n, 0);
    superBlock.writeBigUInt64LE(1n, 8);
    superBlock.writeBigUInt64LE(BigInt(entries.length), 16);
    superBlock.writeUInt32LE(sector, 24);
    parts.push(superBlock);
    for (const entry of entries) {
      const header = Buffer.alloc(sector);
      header.writeBigUInt64LE(BigInt(entry.sector), 0);
      header.writeBigUInt64LE(BigInt((entry.data?.length ?? 0) / sector), 8);
      header.writeBigUInt64LE(BigInt(entry.flags), 16);
      parts.push(header, ...(entry.data ? [entry.data] : []));
    }
    parts.push(Buffer.alloc(sector * 4));
    const log = join(dir, "fua.log");
    const disk = join(dir, "fua.raw");
    await writeFile(log, Buffer.concat(parts));
    await execa("truncate", ["-s", "4M", disk]);
    const stats = await replayDurableWrites(log, disk);
    expect(stats).toMatchObject({ writes: 3, applied: 2, dropped: 1, flushes: 1 });
    expect(await byteAt(disk, 0)).toBe(0x11);
    expect(await byteAt(disk, 32 * sector)).toBe(0);
    expect(await byteAt(disk, 4096 * sector)).toBe(0x44);
  });

  it("drops everything when the cut came before the first flush (qemu has not written the log's super yet)", async () => {
    const { before, log } = await logged("no-flush", ["write -P 0x55 0 4096", "write -P 0x66 1M 4096"]);
    const stats = await replayDurableWrites(log, before);
    expect(stats).toMatchObject({ writes: 2, applied: 0, dropped: 2, flushes: 0 });
    expect(await byteAt(before, 0)).toBe(0);
  });

  it("tells from the log's tail whether the newest write is one no flush covers yet", async () => {
    const open = await logged("tail-open", ["write -P 0x01 0 4096", "flush", "write -P 0x02 4096 4096"]);
    expect(await new WriteLogTail(open.log).unflushedWriteLast()).toBe(true);
    const closed = await logged("tail-closed", ["write -P 0x01 0 4096", "flush"]);
    const tail = new WriteLogTail(closed.log);
    expect(await tail.unflushedWriteLast()).toBe(false);
    // Read again from where it stopped: nothing new, same answer.
    expect(await tail.unflushedWriteLast()).toBe(false);
  });

  it("refuses a file that is not a write log", async () => {
    const notLog = join(dir, "not-a-log");
    await writeFile(notLog, Buffer.alloc(4096, 0x41));
    await expect(replayDurableWrites(notLog, join(dir, "flush.raw"))).rejects.toBeInstanceOf(WriteLogError);
  });
});
