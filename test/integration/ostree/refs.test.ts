/** setRef writes loose refs itself; the real ostree must read them as its own. */
import { execa } from "execa";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initRepo, resolveRef, setRef } from "../../../shared/ostree/repo.ts";
import { commitSyntheticImage } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir("refs");
});
afterAll(async () => removeTree(dir));

describe("setRef", () => {
  it("creates and moves a ref that ostree lists, resolves and keeps through prune", async () => {
    const repo = join(dir, "repo");
    await initRepo(repo, "bare-user");
    const one = await commitSyntheticImage(repo, "a/source", dir, { version: "1", sequence: 1 });
    const two = await commitSyntheticImage(repo, "a/source", dir, { version: "2", sequence: 2 });
    await setRef(repo, "debian/bookworm/x86_64/appliance", one);
    expect(await resolveRef(repo, "debian/bookworm/x86_64/appliance")).toBe(one);
    await setRef(repo, "debian/bookworm/x86_64/appliance", two);
    expect((await execa("ostree", ["refs", `--repo=${repo}`])).stdout.split("\n").sort()).toEqual(["a/source", "debian/bookworm/x86_64/appliance"]);
    expect((await execa("ostree", ["rev-parse", `--repo=${repo}`, "debian/bookworm/x86_64/appliance"])).stdout).toBe(two);
    await execa("ostree", ["refs", `--repo=${repo}`, "--delete", "a/source"]);
    await execa("ostree", ["prune", `--repo=${repo}`, "--refs-only", "--depth=0"]);
    expect((await execa("ostree", ["show", `--repo=${repo}`, two])).exitCode).toBe(0);
  });

  it("refuses a ref name ostree would refuse, and a non-checksum, writing nothing", async () => {
    const repo = join(dir, "repo-bad");
    await initRepo(repo, "bare-user");
    const commit = await commitSyntheticImage(repo, "ok", dir, { version: "1", sequence: 1 });
    await expect(setRef(repo, "../../escape", commit)).rejects.toThrow("'../../escape' is not a valid OSTree ref name");
    await expect(setRef(repo, "a//b", commit)).rejects.toThrow(/not a valid OSTree ref name/);
    await expect(setRef(repo, "ok", "HEAD")).rejects.toThrow("'HEAD' is not a commit checksum");
    expect((await execa("ostree", ["refs", `--repo=${repo}`])).stdout).toBe("ok");
  });
});
