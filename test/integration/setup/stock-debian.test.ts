/**
 * scripts/setup.sh on a stock Debian 12 (issue 21): Debian's own nodejs 18, no compiler. Setup
 * cannot work there (better-sqlite3 has no build for Node 18, vite needs 20.19), so it must stop
 * at once, before installing anything, saying what to install. Run chrooted in bookworm's own
 * Node 18 root (test/helpers/debian-node18.ts).
 */
import { cp, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureNode18Root, runInRoot } from "../../helpers/debian-node18.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let root = "";
let dir = "";

beforeAll(async () => {
  root = await ensureNode18Root();
  dir = await makeTempDir("stock-debian");
  await mkdir(join(dir, "scripts"));
  await cp(fileURLToPath(new URL("../../../scripts/setup.sh", import.meta.url)), join(dir, "scripts", "setup.sh"));
}, 900_000);

afterAll(async () => removeTree(dir));

describe("scripts/setup.sh on stock Debian 12", () => {
  it("stops at its first check with Debian's Node 18, naming what to install, before installing anything", async () => {
    const node = await runInRoot(root, ["node", "--version"]);
    expect(node.stdout.trim()).toMatch(/^v18\./);
    const result = await runInRoot(root, ["bash", join(dir, "scripts", "setup.sh")]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`Node.js 20.19 or newer is needed here, found: ${node.stdout.trim().slice(1)}.`);
    expect(result.stderr).toMatch(/Install Node\.js 20 or 22/);
    expect(result.stdout).not.toMatch(/Installing Debian packages/);
  }, 60_000);
});
