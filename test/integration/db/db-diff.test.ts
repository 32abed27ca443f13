import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { commitSyntheticImage } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let repo: string;
let v1: string;
let v2: string;

const dbDiff = (...args: string[]) => execa(process.execPath, [SERVER_CLI, "db", "diff", "--repo", repo, ...args], { reject: false });

beforeAll(async () => {
  dir = await makeTempDir("db-diff");
  repo = join(dir, "repo");
  await initRepo(repo, "archive");
  const base = [
    { name: "bash", version: "5.2.15-2+b7", architecture: "amd64" },
    { name: "openssl", version: "3.0.11-1~deb12u2", architecture: "amd64" },
    { name: "gone", version: "1.0", architecture: "all" },
  ];
  v1 = await commitSyntheticImage(repo, "a/ref", dir, { version: "1", sequence: 1, packages: base });
  v2 = await commitSyntheticImage(repo, "a/ref", dir, {
    version: "2",
    sequence: 2,
    packages: [base[0]!, { name: "curl", version: "7.88.1-10+deb12u8", architecture: "amd64" }, { name: "openssl", version: "3.0.13-1~deb12u1", architecture: "amd64" }],
  });
  await commitSyntheticImage(repo, "other/ref", dir, { version: "1", sequence: 1 });
});
afterAll(async () => removeTree(dir));

describe("apt-ostree-server db diff", () => {
  it("prints rpm-ostree's sections between two versions of a ref", async () => {
    const result = await dbDiff("--ref", "a/ref", "1", "2");
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe(
      [
        `ostree diff commit from: 1 (${v1})`,
        `ostree diff commit to:   2 (${v2})`,
        "Upgraded:",
        "  openssl 3.0.11-1~deb12u2 -> 3.0.13-1~deb12u1",
        "Removed:",
        "  gone-1.0.all",
        "Added:",
        "  curl-7.88.1-10+deb12u8.amd64",
      ].join("\n"),
    );
  });

  it("prints JSON and accepts commit checksums", async () => {
    const result = await dbDiff("--json", v2, v1);
    expect(result.exitCode).toBe(0);
    const diff = JSON.parse(result.stdout.split("\n").at(-1)!);
    expect(diff).toMatchObject({ from: { commit: v2, version: "2" }, to: { commit: v1, version: "1" } });
    expect(diff.downgraded).toEqual([{ name: "openssl", architecture: "amd64", from: "3.0.13-1~deb12u1", to: "3.0.11-1~deb12u2" }]);
    expect(diff.added.map((p: { name: string }) => p.name)).toEqual(["gone"]);
    expect(diff.removed.map((p: { name: string }) => p.name)).toEqual(["curl"]);
  });

  it.each([
    [["1", "2"], /version '1' exists on several refs \(a\/ref, other\/ref\); pass --ref/],
    [["--ref", "a/ref", "1", "9"], /no version '9' on ref 'a\/ref'/],
    [["--ref", "a/ref", "1", "f".repeat(64)], /commit f{64} is not in/],
  ])("explains why it cannot resolve %j", async (args, message) => {
    const result = await dbDiff(...args);
    expect(result.exitCode).toBe(1);
    expect(result.stderr.trim().split("\n").at(-1)).toMatch(message);
  });
});
