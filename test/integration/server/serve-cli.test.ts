import { spawn } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir("serve-cli");
  await initRepo(join(dir, "repo"), "archive");
});
afterAll(async () => removeTree(dir));

describe("apt-ostree-server serve", () => {
  it("starts on embedded defaults, keeps a generated admin token (0600), and stops on SIGTERM", async () => {
    const { APT_OSTREE_ADMIN_TOKEN: _unset, ...env } = process.env;
    const child = spawn(process.execPath, [SERVER_CLI, "serve", "--repo", join(dir, "repo"), "--data", join(dir, "data"), "--http-port", "0", "--mqtt-port", "0", "--mqtt-ws-port", "0", "--host", "127.0.0.1"], { env, stdio: ["ignore", "pipe", "pipe"] });
    const lines = createInterface({ input: child.stdout! });
    const seen: string[] = [];
    for await (const line of lines) {
      seen.push(line);
      if (line.startsWith("Admin token:")) break;
    }
    const port = /on http:\/\/127\.0\.0\.1:(\d+)\/repo\//.exec(seen[0]!)![1];
    const tokenFile = join(dir, "data/admin-token");
    expect(seen[1]).toMatch(/^MQTT on mqtt:\/\/127\.0\.0\.1:\d+ and ws:\/\/127\.0\.0\.1:\d+\/mqtt$/);
    expect(seen[2]).toBe(`Admin token: ${tokenFile}`);
    expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);
    const token = (await readFile(tokenFile, "utf8")).trim();
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/releases`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ releases: [] });
    const devices = await fetch(`http://127.0.0.1:${port}/api/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
    expect(await devices.json()).toEqual({ devices: [] });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("refuses a directory that is not a repo, saying what to do", async () => {
    const result = await execa(process.execPath, [SERVER_CLI, "serve", "--repo", dir, "--data", join(dir, "data2"), "--http-port", "0", "--mqtt-port", "0", "--mqtt-ws-port", "off"], { reject: false });
    expect(result.exitCode).toBe(1);
    expect(result.stderr.trim().split("\n").at(-1)).toBe(`error: ${dir} is not an OSTree repo (no config file); compose and publish into it first, or pass --repo`);
  });
});
