/**
 * A compose's scratch folder is named by pid and boot id, and the folders of composes that are
 * gone are removed when the next compose starts: a killed process, and any process of an earlier
 * boot, even when its pid is in use again now.
 */
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createWorkDir, workDir } from "../../../server/compose/cache.ts";
import { readBootId } from "../../../shared/process-alive.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let cache: string;
beforeEach(async () => {
  cache = await makeTempDir("work-dir");
});
afterEach(async () => {
  await removeTree(cache);
});

describe("compose scratch folders", () => {
  it("keeps a live compose's folder and removes those of dead processes and earlier boots", async () => {
    const bootId = (await readBootId()).replaceAll("-", "");
    expect(bootId).toMatch(/^[0-9a-f]{32}$/);
    const base = workDir(cache);
    // pid 1 is alive in this boot: its folder stays. In another boot it is some other process.
    const live = `compose-1-${bootId}-aaaaaa`;
    const earlierBoot = `compose-1-${"0".repeat(32)}-bbbbbb`;
    const dead = `compose-999999999-${bootId}-cccccc`;
    const oldStyleDead = "compose-999999999-dddddd";
    for (const name of [live, earlierBoot, dead, oldStyleDead]) await mkdir(join(base, name), { recursive: true });

    const mine = await createWorkDir(cache);
    expect(mine.startsWith(join(base, `compose-${process.pid}-${bootId}-`))).toBe(true);
    expect((await readdir(base)).sort()).toEqual([live, mine.slice(base.length + 1)].sort());
  });
});
