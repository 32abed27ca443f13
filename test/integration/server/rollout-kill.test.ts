/**
 * kill -9 the real server process in the middle of a rollout, start it again: the rollout goes
 * on from where it was, and no device gets a second, conflicting command.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { SimulatedDevice } from "../../helpers/simulated-device.ts";
import { initServerRepo, publishSyntheticVersion } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { TEST_ADMIN_TOKEN } from "../../helpers/server-settings.ts";
import { until } from "../../helpers/wait.ts";
import { adminApi } from "../../helpers/admin-api.ts";
import { autoAcceptSettings, TEST_ENROLLMENT_SECRET } from "../../helpers/enrollment-secret.ts";

const REF = "test/bookworm/test-machine/test-image";
const TOKEN = TEST_ADMIN_TOKEN;
const key = generateKeyPair();
let dir: string;
let httpPort: number;
let mqttPort: number;
let serverProcess: ChildProcess | null = null;
const devices: SimulatedDevice[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

async function startServerProcess(): Promise<void> {
  serverProcess = spawn(
    process.execPath,
    [SERVER_CLI, "serve", "--repo", join(dir, "repo"), "--data", join(dir, "data"), "--http-port", String(httpPort), "--mqtt-port", String(mqttPort), "--mqtt-ws-port", "off", "--host", "127.0.0.1", "--insecure-plain", "--auto-accept", "--enrollment-secret-file", join(dir, "enrollment-secret"), "--key", join(dir, "server.secret")],
    { env: { ...process.env, APT_OSTREE_ADMIN_TOKEN: TOKEN, APT_OSTREE_LOG_LEVEL: "warn" }, stdio: "ignore" },
  );
  await until(async () => (await fetch(`http://127.0.0.1:${httpPort}/healthz`).catch(() => null))?.ok, "the server to answer");
}

const call = adminApi(() => `http://127.0.0.1:${httpPort}`);
const api = async (path: string, body?: unknown) => (await call(path, body)).json;


beforeAll(async () => {
  dir = await makeTempDir("rollout-kill");
  const repo = await initServerRepo(dir, key);
  for (const version of [1, 2]) await publishSyntheticVersion(repo, REF, dir, key, version);
  [httpPort, mqttPort] = [await freePort(), await freePort()];
  await autoAcceptSettings(dir);
  await startServerProcess();
  for (let i = 0; i < 6; i++) {
    const device = new SimulatedDevice(`kill-${i}`, key.publicKey, ["fleet"], { enrollmentSecret: TEST_ENROLLMENT_SECRET });
    device.updateDelayMs = 400;
    await device.connect(mqttPort);
    devices.push(device);
  }
  await until(async () => (await api("devices")).devices.filter((d: { reportedGroups: string[] }) => d.reportedGroups.includes("fleet")).length === 6, "6 devices enrolled");
  // Rollouts select on the groups the operator assigns, not on those the devices report.
  for (const device of devices) await api(`devices/${device.id}/groups`, { groups: ["fleet"] });
});
afterAll(async () => {
  for (const device of devices) await device.disconnect().catch(() => undefined);
  serverProcess?.kill("SIGKILL");
  await removeTree(dir);
});

describe("a server killed with SIGKILL mid-rollout", () => {
  it("continues the rollout after a restart and sends no device a second command", async () => {
    const { rollout } = await api("rollouts", { ref: REF, select: { groups: ["fleet"] }, waves: "34%,67%,100%", waveDelay: "1s", waveTimeout: "60s", maxFailures: "50%" });
    await until(async () => {
      const { rollout: now } = await api(`rollouts/${rollout.id}`);
      return now.waves[0].healthy === now.waves[0].devices && now.waves[1].inProgress > 0;
    }, "wave 2 to be under way");

    const exited = new Promise((resolve) => serverProcess!.once("exit", resolve));
    serverProcess!.kill("SIGKILL");
    await exited;
    for (const device of devices) await device.disconnect().catch(() => undefined);
    await startServerProcess();
    for (const device of devices) await device.connect(mqttPort);

    const done = await until(async () => {
      const { rollout: now } = await api(`rollouts/${rollout.id}`);
      return now.progress.state === "completed" ? now : null;
    }, "the rollout to complete");
    expect(done.devices.map((m: { status: string }) => m.status)).toEqual(Array(6).fill("healthy"));
    for (const device of devices) {
      expect(device.distinctCommands()).toEqual([rollout.id]);
      expect(device.booted.version).toBe("2");
    }
  });
});
