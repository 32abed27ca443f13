/**
 * The agent's whole cycle without a real boot: the real server (HTTP repo, embedded MQTT, rollouts),
 * the real agent on a throwaway sysroot with the real `ostree`, and a simulated bootloader that
 * follows the grubenv counter the agent arms. v2 rolls out and comes up healthy; v3's required
 * health check fails, the counter runs out, the bootloader falls back to v2 and the agent makes
 * the rollback permanent and reports it with the check's output.
 */
import { access, chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { formatPublicKey, formatSecretKey } from "../../../shared/sign/keys.ts";
import { publish } from "../../../server/publish/publish.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { AGENT_DEFAULTS, type AgentSettings } from "../../../device/config/settings.ts";
import { runAgent, type RunningAgent } from "../../../device/agent/run.ts";
import { readDeployments } from "../../../device/sysroot/deployments.ts";
import { testServerSettings } from "../../helpers/server-settings.ts";
import { commitSyntheticImage } from "../../helpers/synthetic-image.ts";
import { createDeviceDisk, OSNAME, type SimulatedBootloader } from "../../helpers/simulated-bootloader.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";
import { adminApi } from "../../helpers/admin-api.ts";

const REF = "test/bookworm/test-machine/test-image";
const key = generateKeyPair();
let dir: string;
let repo: string;
let server: RunningServer;
let disk: SimulatedBootloader;
let settings: AgentSettings;
let agent: RunningAgent | null = null;
const api = adminApi(() => `http://127.0.0.1:${server.httpPort}`);
const rebootFlag = () => join(dir, "reboot-requested");

async function publishVersion(version: number): Promise<string> {
  const commit = await commitSyntheticImage(repo, REF, dir, { version: String(version), sequence: version, payloadBytes: 200_000, payloadSeed: `v${version}` });
  await publish({ repo, ref: REF, key, channel: "stable", deltaDepth: 2, expiresInSeconds: 86400, log: silentLogger() });
  return commit;
}

/** Waits for the agent to ask for a reboot, then powers the simulated device off and on again. */
async function rebootWhenAsked(): Promise<void> {
  await until(() => access(rebootFlag()).then(() => true, () => false), "the agent to ask for a reboot", 60_000);
  await rm(rebootFlag());
  await agent!.stop();
  await disk.boot();
  agent = await runAgent(settings, silentLogger());
}

async function device() {
  return (await api("devices/dev-1")).json.device;
}

beforeAll(async () => {
  dir = await makeTempDir("agent-cycle");
  repo = join(dir, "repo");
  await initRepo(repo, "archive");
  await writeFile(join(dir, "server.secret"), formatSecretKey(key), { mode: 0o600 });
  const v1 = await publishVersion(1);
  server = await startServer({ ...testServerSettings({ repo, data: join(dir, "data"), autoAccept: true, signingKey: join(dir, "server.secret") }), tickMilliseconds: 100 }, silentLogger());
  disk = await createDeviceDisk(join(dir, "device"), repo, REF, v1);
  await mkdir(join(dir, "device", "keys.d"), { recursive: true });
  await writeFile(join(dir, "device", "keys.d", "server.pub"), formatPublicKey(key.publicKey));
  settings = {
    ...AGENT_DEFAULTS,
    server: `http://127.0.0.1:${server.httpPort}`,
    mqtt: `mqtt://127.0.0.1:${server.mqttPort}`,
    deviceId: "dev-1",
    groups: ["lab"],
    ref: REF,
    osname: OSNAME,
    sysroot: disk.sysroot,
    stateDir: join(dir, "device", "state", "agent"),
    keysDir: join(dir, "device", "keys.d"),
    healthDir: join(dir, "device", "health.d"),
    cmdlineFile: disk.cmdlineFile,
    bootIdFile: disk.bootIdFile,
    grubenv: disk.grubenv,
    bootTries: 2,
    rebootCommand: ["touch", rebootFlag()],
    stage: false,
    checkSystemdUnits: false,
    serverReachTimeoutSeconds: 10,
  };
  agent = await runAgent(settings, silentLogger());
  await until(async () => (await device())?.booted?.version === "1", "dev-1 to enroll and report v1");
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await server?.close();
  await removeTree(dir);
});

describe("the agent's update cycle on a simulated boot", () => {
  it("takes v2 from a rollout: downloads the delta, deploys, reboots into it, reports healthy", async () => {
    const v2 = await publishVersion(2);
    const { json } = await api("rollouts", { ref: REF, select: { devices: ["dev-1"] }, waves: "100%", waveDelay: "0s", waveTimeout: "5m" });
    await rebootWhenAsked();
    expect(await disk.readEnv()).toMatchObject({ boot_counter: "1", boot_success: "0" });
    await until(async () => ((await api(`rollouts/${json.rollout.id}`)).json.rollout.progress.state === "completed" ? true : null), "the rollout to complete", 60_000);
    expect(await device()).toMatchObject({ state: "healthy", booted: { commit: v2, version: "2" }, rollback: { version: "1" }, pending: null });
    // Blessed: the counter is cleared, so the next boot needs no fallback.
    expect(await disk.readEnv()).toMatchObject({ boot_success: "1" });
    expect((await disk.readEnv()).boot_counter).toBeUndefined();
    const events = (await api("devices/dev-1")).json.events.map((e: { report: { state: string } | null }) => e.report?.state).filter(Boolean).reverse();
    expect(events).toEqual(expect.arrayContaining(["downloading", "staged", "rebooting", "verifying", "healthy"]));
    const downloading = (await api("devices/dev-1")).json.events.find((e: { report: { progress?: { bytes: number; total: number } } | null }) => e.report?.progress?.bytes);
    expect(downloading.report.progress.bytes).toBe(downloading.report.progress.total);
  }, 120_000);

  it("rolls back from v3 whose required health check fails, permanently, and says why", async () => {
    await mkdir(join(settings.healthDir, "required"), { recursive: true });
    const check = join(settings.healthDir, "required", "app.sh");
    await writeFile(check, "#!/bin/sh\necho 'app: port 8080 not answering'\nexit 1\n");
    await chmod(check, 0o755);
    const v3 = await publishVersion(3);
    const { json } = await api("rollouts", { ref: REF, select: { devices: ["dev-1"] }, waves: "100%", waveDelay: "0s", waveTimeout: "5m", maxFailures: "0%" });
    await rebootWhenAsked(); // into v3, try 1: check fails
    await rebootWhenAsked(); // v3, try 2: check fails
    await rebootWhenAsked(); // counter out: the bootloader falls back to v2
    expect(disk.bootLog.slice(-3)).toEqual([expect.stringMatching(/ 2$/), expect.stringMatching(/ 1$/), expect.stringMatching(/ 0$/)]);
    const rolledBack = await until(async () => {
      const d = await device();
      return d.state === "rolled-back" ? d : null;
    }, "the rolled-back report", 60_000);
    expect(rolledBack.booted.version).toBe("2");
    const report = (await api("devices/dev-1")).json.events.find((e: { report: { state: string } | null }) => e.report?.state === "rolled-back").report;
    expect(report.rolledBack).toEqual({ from: { commit: v3, version: "3" }, to: expect.objectContaining({ version: "2" }), reason: "required health check app.sh failed: app: port 8080 not answering\n(exit code 1)" });
    // Permanent: v3's deployment is gone, v2 is the default again.
    const deployments = await readDeployments({ sysroot: disk.sysroot, cmdline: "" });
    expect(deployments.map((d) => d.version)).not.toContain("3");
    expect(deployments[0]!.version).toBe("2");
    const rollout = await until(async () => {
      const r = (await api(`rollouts/${json.rollout.id}`)).json.rollout;
      return r.progress.state === "paused" ? r : null;
    }, "the rollout to pause on its threshold");
    expect(rollout.devices).toEqual([expect.objectContaining({ deviceId: "dev-1", status: "rolled-back" })]);
    await rm(check);
  }, 180_000);
});
