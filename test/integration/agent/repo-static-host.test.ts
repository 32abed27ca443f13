/**
 * The repo on any static host (issue 21): `publish` output served by Debian's nginx, as plain
 * files, while the API and broker run in the server; `serve --repo-url` makes update commands
 * name it (signed), the device's `repo` setting makes its own fetches go there. The real agent
 * updates through nginx alone, and a download cut halfway resumes there with a Range request.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { downloadVerified } from "../../../device/update/download.ts";
import { execa } from "execa";
import { AgentFixture, DEVICE_ID, REF } from "../../helpers/agent-fixture.ts";
import { DEVICE_CLI } from "../../helpers/cli.ts";
import { startNginx, type RunningNginx } from "../../helpers/nginx.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();
let nginx: RunningNginx;
let site = "";

/** Every file under `dir`, relative to it. */
async function filesUnder(dir: string, prefix = ""): Promise<string[]> {
  const entries = await readdir(join(dir, prefix), { withFileTypes: true });
  const nested = await Promise.all(entries.map((entry) => (entry.isDirectory() ? filesUnder(dir, join(prefix, entry.name)) : Promise.resolve([join(prefix, entry.name)]))));
  return nested.flat();
}

beforeAll(async () => {
  site = await makeTempDir("static-site");
  // nginx starts before the fixture makes its repo: its root is a link made once the repo exists.
  nginx = await startNginx("repo", join(site, "repo"));
  await fixture.setUp("repo-static-host", { publishUpTo: 2, repoUrl: `${nginx.url}/` });
  await symlink(fixture.repo, join(site, "repo"));
  // The device's own setting is left at the server's /repo: the signed command alone sends it to nginx.
  await fixture.startAgent();
  await until(async () => (await fixture.device())?.booted?.version === "1", "the device to enroll and report v1", 30_000);
}, 90_000);

afterAll(async () => {
  await fixture.tearDown();
  await nginx?.stop();
  await removeTree(site);
}, 30_000);

const repoBytesServedByServer = async () => {
  const text = await (await fetch(`http://127.0.0.1:${fixture.server.httpPort}/metrics`)).text();
  return Number(/^aptostree_http_bytes_served_total (\d+)/m.exec(text)?.[1] ?? 0);
};

describe("the repo on a static host", () => {
  it("updates the device through nginx alone: the command names the host, the server serves no repo byte", async () => {
    const { json } = await fixture.api("rollouts", { ref: REF, select: { devices: [DEVICE_ID] }, waves: "100%", waveDelay: "0s", waveTimeout: "5m" });
    await fixture.rebootWhenAsked();
    await until(async () => ((await fixture.api(`rollouts/${json.rollout.id}`)).json.rollout.progress.state === "completed" ? true : null), "the rollout to complete", 60_000);
    expect(await fixture.device()).toMatchObject({ state: "healthy", booted: { version: "2" } });

    const served = await nginx.accessLog();
    const deltaParts = served.filter((line) => line.path.startsWith("/deltas/") && line.status === 200);
    expect(deltaParts.length).toBeGreaterThan(0);
    expect(served.filter((line) => line.status >= 400 && line.status !== 404)).toEqual([]);
    expect(await repoBytesServedByServer()).toBe(0);
  }, 120_000);

  it("polls the channel on the static host when the device's config names it (`repo`)", async () => {
    await fixture.stopAgent();
    fixture.settings = { ...fixture.settings, repo: nginx.url };
    await fixture.startAgent();
    await fixture.publishVersion(3);
    const result = await execa(process.execPath, [DEVICE_CLI, "upgrade", "--check", "--json", "--config", await fixture.writeConfig()], { reject: false });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ available: true, manifest: { version: "3" } });
    expect((await nginx.accessLog()).filter((line) => line.path.startsWith("/channels/stable/") && line.status === 200).length).toBeGreaterThan(0);
    expect(await repoBytesServedByServer()).toBe(0);
  }, 60_000);

  it("resumes a delta file cut halfway with a Range request to nginx, and verifies the whole", async () => {
    const deltas = (await filesUnder(fixture.repo, "deltas")).filter((path) => !path.endsWith("/"));
    const sizes = await Promise.all(deltas.map(async (path) => ({ path, size: (await stat(join(fixture.repo, path))).size })));
    const file = sizes.sort((a, b) => b.size - a.size)[0]!;
    expect(file.size).toBeGreaterThan(1000);
    const content = await readFile(join(fixture.repo, file.path));
    const expected = { path: file.path, size: content.length, sha256: createHash("sha256").update(content).digest("hex") };

    const dir = await makeTempDir("static-resume");
    try {
      const dest = join(dir, "file");
      await mkdir(dir, { recursive: true });
      const half = Math.floor(content.length / 2);
      await writeFile(`${dest}.part`, content.subarray(0, half));
      await downloadVerified(`${nginx.url}/${file.path}`, dest, expected, { stallMs: 10_000 });
      expect((await readFile(dest)).equals(content)).toBe(true);
      const resumed = (await nginx.accessLog()).filter((line) => line.path === `/${file.path}` && line.status === 206);
      expect(resumed).toEqual([{ method: "GET", path: `/${file.path}`, status: 206, bytes: content.length - half, range: `bytes=${half}-` }]);
    } finally {
      await removeTree(dir);
    }
  });
});
