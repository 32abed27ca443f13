/** The refs that keep the bases of layered deployments, on a real repo. */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { syncBaseRefs } from "../../../device/layering/base-refs.ts";
import type { Deployment } from "../../../device/sysroot/deployments.ts";
import { commitTree } from "../../../shared/ostree/commit.ts";
import { initRepo, listRefs, resolveRef } from "../../../shared/ostree/repo.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let repo: string;
beforeEach(async () => {
  dir = await makeTempDir("base-refs");
  repo = join(dir, "repo");
  await initRepo(repo, "bare-user");
  await mkdir(join(dir, "tree"));
  await writeFile(join(dir, "tree", "f"), "x");
});
afterEach(() => removeTree(dir));

const deployment = (checksum: string, base: string): Deployment => ({ id: `d-${checksum}.0`, osname: "debian", checksum, base, serial: 0, version: "1", origin: "r", timestamp: 1, booted: false, staged: false, pending: false, rollback: false, pinned: false });

describe("base refs", () => {
  it("name each base under a layered deployment once, skip one already gone, and let go of the rest", async () => {
    const base = await commitTree({ repo, tree: join(dir, "tree"), branch: "b", subject: "b", timestamp: 1 });
    const layered = "1".repeat(64);
    const gone = "2".repeat(64);
    expect(await syncBaseRefs(repo, [deployment(layered, base), deployment("3".repeat(64), base), deployment("4".repeat(64), gone), deployment(base, base)])).toEqual([base]);
    expect(await resolveRef(repo, "apt-ostree/base/0")).toBe(base);
    expect((await listRefs(repo)).filter((r) => r.startsWith("apt-ostree/base/"))).toEqual(["apt-ostree/base/0"]);
    await syncBaseRefs(repo, [deployment(base, base)]);
    expect((await listRefs(repo)).filter((r) => r.startsWith("apt-ostree/base/"))).toEqual([]);
  });
});
