import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { acquirePidLock, LockHeldError } from "../../../shared/fs/pid-lock.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let lock: string;
let bootIdFile: string;
const THIS_BOOT = "3f0c1a52-0000-4000-8000-000000000001";
const EARLIER_BOOT = "3f0c1a52-0000-4000-8000-000000000000";
/** A pid no process has: above the kernel's pid_max. */
const DEAD_PID = 4_194_305;

beforeAll(async () => {
  dir = await makeTempDir("pid-lock");
  lock = join(dir, "lock");
  bootIdFile = join(dir, "boot_id");
  await writeFile(bootIdFile, `${THIS_BOOT}\n`);
});
afterAll(() => removeTree(dir));

describe("acquirePidLock", () => {
  it("records its pid and this boot's id, and removes the file on release", async () => {
    const release = await acquirePidLock(lock, "a test", { bootIdFile });
    expect(await readFile(lock, "utf8")).toBe(`${process.pid} ${THIS_BOOT}\n`);
    await release();
    await expect(readFile(lock, "utf8")).rejects.toThrow(/ENOENT/);
  });

  it("refuses while a live process of this boot holds it, naming the holder", async () => {
    await writeFile(lock, `${process.pid} ${THIS_BOOT}\n`);
    const refused = acquirePidLock(lock, "apt-ostreed", { bootIdFile });
    await expect(refused).rejects.toBeInstanceOf(LockHeldError);
    await expect(refused).rejects.toThrow(`apt-ostreed (pid ${process.pid}) holds ${lock}`);
    // Written before boot ids were recorded: the pid alone decides.
    await writeFile(lock, `${process.pid}\n`);
    await expect(acquirePidLock(lock, "apt-ostreed", { bootIdFile })).rejects.toBeInstanceOf(LockHeldError);
  });

  it("lets exactly one of many contenders take a lock at once, never leaving a half-written one to be taken for dead", async () => {
    // In one process every contender has the same pid: the holder is alive to all the others.
    await writeFile(lock, `${DEAD_PID} ${THIS_BOOT}\n`);
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => acquirePidLock(lock, "a test", { bootIdFile })));
    const taken = results.filter((r) => r.status === "fulfilled");
    expect(taken).toHaveLength(1);
    for (const refused of results.filter((r) => r.status === "rejected")) expect((refused as PromiseRejectedResult).reason).toBeInstanceOf(LockHeldError);
    expect(await readFile(lock, "utf8")).toBe(`${process.pid} ${THIS_BOOT}\n`);
    await (taken[0] as PromiseFulfilledResult<() => Promise<void>>).value();
    expect((await readdir(dir)).filter((n) => n.startsWith("lock"))).toEqual([]);
  });

  it("takes over a lock whose process is gone", async () => {
    await writeFile(lock, `${DEAD_PID} ${THIS_BOOT}\n`);
    const release = await acquirePidLock(lock, "a test", { bootIdFile });
    expect(await readFile(lock, "utf8")).toBe(`${process.pid} ${THIS_BOOT}\n`);
    await release();
  });

  it("takes over a lock left by an earlier boot, even when its pid is alive again in this one", async () => {
    // A power loss or a watchdog reset skipped the release; this boot gave the pid to someone else.
    await writeFile(lock, `${process.pid} ${EARLIER_BOOT}\n`);
    const release = await acquirePidLock(lock, "a test", { bootIdFile });
    expect(await readFile(lock, "utf8")).toBe(`${process.pid} ${THIS_BOOT}\n`);
    await release();
  });
});
