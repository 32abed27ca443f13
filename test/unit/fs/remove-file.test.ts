import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { removeFile } from "../../../shared/fs/remove-file.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

describe("removeFile", () => {
  let dir: string | null = null;
  afterEach(async () => {
    if (dir) await removeTree(dir);
    dir = null;
  });

  it("removes a file, takes a missing one as removed, and leaves a directory alone with an error", async () => {
    dir = await makeTempDir("remove-file");
    await writeFile(join(dir, "a"), "x");
    await mkdir(join(dir, "sub"));
    await writeFile(join(dir, "sub", "kept"), "y");
    await removeFile(join(dir, "a"));
    await removeFile(join(dir, "never-was"));
    await expect(removeFile(join(dir, "sub"))).rejects.toMatchObject({ code: expect.stringMatching(/^(EISDIR|EPERM)$/) });
    expect(await readdir(dir)).toEqual(["sub"]);
    expect(await readdir(join(dir, "sub"))).toEqual(["kept"]);
  });
});
