/**
 * The agent's state lock between processes (apt-ostreed restarting while the CLI starts one of
 * its own, as a kill -9 leaves it): of contenders that start together on a stale lock, at most
 * one holds it at any moment, and none fails with anything but "held".
 */
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir("pid-lock-processes");
});
afterAll(() => removeTree(dir));

const CONTENDER = `
import { appendFile } from "node:fs/promises";
import { acquirePidLock } from ${JSON.stringify(new URL("../../../shared/fs/pid-lock.ts", import.meta.url).pathname)};
const [lock, log, bootIdFile, startAt] = process.argv.slice(2);
while (Date.now() < Number(startAt)) await new Promise((r) => setTimeout(r, 1));
for (let i = 0; i < 20; i++) {
  try {
    const release = await acquirePidLock(lock, "a contender", { bootIdFile });
    await appendFile(log, \`take \${process.pid} \${process.hrtime.bigint()}\\n\`);
    await new Promise((r) => setTimeout(r, 5));
    await appendFile(log, \`drop \${process.pid} \${process.hrtime.bigint()}\\n\`);
    await release();
  } catch (error) {
    if (error.name !== "LockHeldError") { await appendFile(log, \`error \${process.pid} \${error.message}\\n\`); }
  }
}
`;

describe("the pid lock between processes", () => {
  it("is held by one contender at a time, and never fails for another reason", async () => {
    const script = join(dir, "contender.mts");
    await writeFile(script, CONTENDER);
    const lock = join(dir, "lock");
    const log = join(dir, "log");
    const bootIdFile = join(dir, "boot_id");
    await writeFile(bootIdFile, "3f0c1a52-0000-4000-8000-000000000001\n");
    await writeFile(lock, "4194305 3f0c1a52-0000-4000-8000-000000000001\n");
    await writeFile(log, "");
    const startAt = String(Date.now() + 4000);
    const tsx = new URL("../../../node_modules/.bin/tsx", import.meta.url).pathname;
    await Promise.all(Array.from({ length: 6 }, () => new Promise<void>((resolve, reject) => {
      const child = spawn(tsx, [script, lock, log, bootIdFile, startAt], { stdio: "inherit" });
      child.once("error", reject);
      child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`contender exited ${code}`))));
    })));
    const lines = (await readFile(log, "utf8")).trim().split("\n").filter(Boolean);
    expect(lines.filter((l) => l.startsWith("error"))).toEqual([]);
    // Ordered by time, takes and drops alternate: nobody took the lock while another held it.
    const events = lines.map((l) => l.split(" ")).sort((a, b) => (BigInt(a[2]!) < BigInt(b[2]!) ? -1 : 1));
    let holder: string | null = null;
    for (const [kind, pid] of events) {
      if (kind === "take") {
        expect(holder).toBeNull();
        holder = pid!;
      } else {
        expect(holder).toBe(pid);
        holder = null;
      }
    }
    expect(events.filter(([kind]) => kind === "take").length).toBeGreaterThan(1);
  }, 60_000);
});
