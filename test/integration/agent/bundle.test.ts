/**
 * The esbuild bundles on Debian bookworm's own Node.js 18 (the image's runtime), with no
 * node_modules beside them: the bundled apt-ostreed enrolls, reports and stages an update from
 * the real server over TLS (mqtts://, https://, the CA pinned in caFile); the bundled apt-ostree
 * reads the result.
 */
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_BUNDLE, bundleDevice, CLI_BUNDLE } from "../../../device/bundle.ts";
import { AgentFixture, REF } from "../../helpers/agent-fixture.ts";
import { ensureNode18Root, runInRoot, spawnInRoot } from "../../helpers/debian-node18.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();
let root: string;
let agentBundle: string;
let cliBundle: string;
let config: string;
let stopAgent: (() => void) | null = null;

beforeAll(async () => {
  root = await ensureNode18Root();
  await fixture.setUp("bundle", { tls: true });
  // The root has no /etc/hosts to resolve localhost: the server by its address (an IP SAN).
  fixture.settings = { ...fixture.settings, rebootStrategy: "command", server: fixture.settings.server.replace("//localhost:", "//127.0.0.1:") };
  config = await fixture.writeConfig();
  const outputs = await bundleDevice(join(fixture.dir, "dist"));
  agentBundle = join(fixture.dir, "dist", AGENT_BUNDLE);
  cliBundle = join(fixture.dir, "dist", CLI_BUNDLE);
  const names = outputs.map((f) => relative(join(fixture.dir, "dist"), f)).sort();
  expect(names.filter((f) => !f.startsWith("lib/"))).toEqual(["apt-ostree.mjs", "apt-ostreed.cjs"]);
  // undici loads on the first download, from its own file (the agent's) or chunk (the CLI's).
  expect(names).toContain("lib/http-client.cjs");
  expect(names.some((f) => /^lib\/http-client-[A-Z0-9]+\.mjs$/.test(f))).toBe(true);
  // pino without its worker-thread transports, sonic-boom without node:assert (bundle.ts).
  const agentSource = await readFile(agentBundle, "utf8");
  expect(agentSource).toContain("isMainThread");
  expect(agentSource).not.toMatch(/require\("(node:)?(worker_threads|assert)"\)/);
}, 300_000);

afterAll(async () => {
  stopAgent?.();
  await fixture.tearDown();
});

describe("the device bundles on Debian's Node.js 18", () => {
  it("runs on node 18 without node_modules", async () => {
    expect((await runInRoot(root, ["node", "--version"])).stdout).toMatch(/^v18\./);
    const help = await runInRoot(root, ["node", agentBundle, "--help"]);
    expect(help.exitCode, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/Usage: apt-ostreed/);
    const bad = await runInRoot(root, ["node", agentBundle, "--config", "/nonexistent/agent.yaml"]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/no 'ref' set/);
  });

  it("enrolls, reports and stages an update; the CLI bundle shows it", async () => {
    const child = spawnInRoot(root, ["node", agentBundle, "--config", config], { output: true });
    let log = "";
    child.stderr!.on("data", (chunk: Buffer) => (log += chunk.toString()));
    child.stdout!.resume();
    stopAgent = () => child.kill("SIGKILL");
    await until(async () => (await fixture.device())?.booted?.version === "1", "the bundled agent to report v1", 60_000);
    // At start the agent has its HTTP client's code cache written (device/update/code-cache.ts).
    const cacheDir = join(fixture.settings.stateDir, "code-cache");
    const cached = await until(async () => (await readdir(cacheDir).catch(() => [])).find((f) => /^http-client\.cjs\.[0-9a-f]{32}\.v8cache$/.test(f)) ?? null, "the code cache", 60_000);
    const v2 = await fixture.publishVersion(2);
    await fixture.api("rollouts", { ref: REF, select: { devices: ["dev-1"] }, waves: "100%", waveDelay: "0s", waveTimeout: "5m" });
    await until(async () => ((await fixture.device()).state === "staged" ? true : null), "the bundled agent to stage v2", 60_000);
    const status = await runInRoot(root, ["node", cliBundle, "status", "--json", "--config", config]);
    expect(status.exitCode, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ state: "staged", deployments: [{ checksum: v2, pending: true }, { version: "1", booted: true }] });
    // The download loaded the client from that cache (one V8 refused would have been removed).
    expect(log).toMatch(/"event":"agent\.http-client\.loaded","codeCache":"hit"/);
    expect(await readdir(cacheDir)).toEqual([cached]);
  }, 120_000);
});
