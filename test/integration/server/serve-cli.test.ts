import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { hostname } from "node:os";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { trustingFetch } from "../../helpers/serve-process.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir("serve-cli");
  await initRepo(join(dir, "repo"), "archive");
});
afterAll(async () => removeTree(dir));

describe("apt-ostree-server serve", () => {
  it("starts on embedded defaults over TLS with a CA it makes in DATA/tls, keeps a generated admin token (0600), and stops on SIGTERM", async () => {
    const { APT_OSTREE_ADMIN_TOKEN: _unset, ...env } = process.env;
    const child = spawn(process.execPath, [SERVER_CLI, "serve", "--repo", join(dir, "repo"), "--data", join(dir, "data"), "--http-port", "0", "--mqtt-port", "0", "--mqtt-ws-port", "0", "--host", "127.0.0.1"], { env, stdio: ["ignore", "pipe", "pipe"] });
    const lines = createInterface({ input: child.stdout! });
    const seen: string[] = [];
    for await (const line of lines) {
      seen.push(line);
      if (line.startsWith("CA:")) break;
    }
    const port = /on https:\/\/127\.0\.0\.1:(\d+)\/repo\//.exec(seen[0]!)![1];
    const tokenFile = join(dir, "data/admin-token");
    const caFile = join(dir, "data/tls/ca.pem");
    expect(seen[1]).toMatch(/^MQTT on mqtts:\/\/127\.0\.0\.1:\d+ and wss:\/\/127\.0\.0\.1:\d+\/mqtt$/);
    expect(seen[2]).toBe(`Admin token: ${tokenFile}`);
    expect(seen[3]).toBe(`CA: ${caFile} (devices pin it: image build --ca; the CLI: --ca or APT_OSTREE_CA)`);
    expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "data/tls/ca.key"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "data/tls/server.key"))).mode & 0o777).toBe(0o600);
    const server = new X509Certificate(await readFile(join(dir, "data/tls/server.pem")));
    expect(server.subjectAltName).toBe(`DNS:localhost, IP Address:127.0.0.1, DNS:${hostname().toLowerCase()}`);
    const fetch = trustingFetch(await readFile(caFile, "utf8"));
    const token = (await readFile(tokenFile, "utf8")).trim();
    const res = await fetch(`https://127.0.0.1:${port}/api/v1/releases`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ releases: [] });
    const devices = await fetch(`https://127.0.0.1:${port}/api/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
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
