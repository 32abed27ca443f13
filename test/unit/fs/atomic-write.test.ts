import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { atomicWriteTarget, removeAtomicWriteLeftovers, writeFileAtomic } from "../../../shared/fs/atomic-write.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

describe("atomicWriteTarget", () => {
  it("names the file a temporary was for, and nothing for other names", () => {
    expect(atomicWriteTarget(".state.json.tmp-123-abcd0123")).toBe("state.json");
    expect(atomicWriteTarget(".a.tmp-b.tmp-9-ff")).toBe("a.tmp-b");
    expect(atomicWriteTarget("state.json")).toBeNull();
    expect(atomicWriteTarget(".hidden")).toBeNull();
    expect(atomicWriteTarget(".tmp-1-ab")).toBeNull();
  });
});

describe("removeAtomicWriteLeftovers", () => {
  let dir: string | null = null;
  afterEach(async () => {
    if (dir) await removeTree(dir);
  });

  it("removes the temporaries it is asked for and leaves every other file", async () => {
    dir = await makeTempDir("atomic-write");
    await writeFileAtomic(join(dir, "state.json"), "{}\n");
    const names = [".state.json.tmp-7-0badc0de", ".device-id.tmp-8-00ff00ff", ".hidden", "notes.tmp-1-ab"];
    for (const name of names) await writeFile(join(dir, name), "partial");
    expect(await removeAtomicWriteLeftovers(dir, (target) => target === "state.json")).toEqual([".state.json.tmp-7-0badc0de"]);
    expect(await removeAtomicWriteLeftovers(dir)).toEqual([".device-id.tmp-8-00ff00ff"]);
    expect((await readdir(dir)).sort()).toEqual([".hidden", "notes.tmp-1-ab", "state.json"]);
    expect(await readFile(join(dir, "state.json"), "utf8")).toBe("{}\n");
  });
});
