/**
 * Rollouts against the real server (in-process), real MQTT and simulated devices: waves, the
 * failure threshold pausing a rollout, a restart mid-rollout, and an offline device catching up.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { SimulatedDevice } from "../../helpers/simulated-device.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { execa } from "execa";
import { initServerRepo, publishSyntheticVersion } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";
import { adminApi } from "../../helpers/admin-api.ts";
import { TEST_ADMIN_TOKEN, testServerSettings } from "../../helpers/server-settings.ts";
import { autoAcceptSettings, TEST_ENROLLMENT_SECRET } from "../../helpers/enrollment-secret.ts";

const REF = "test/bookworm/test-machine/test-image";
const TOKEN = TEST_ADMIN_TOKEN;
const key = generateKeyPair();
let dir: string;
let repo: string;
let server: RunningServer;
const devices: SimulatedDevice[] = [];

async function start(): Promise<RunningServer> {
  return startServer(
    { ...testServerSettings({ repo, data: join(dir, "data"), ...(await autoAcceptSettings(dir)), signingKey: join(dir, "server.secret") }), tickMilliseconds: 100 },
    silentLogger(),
  );
}

const api = adminApi(() => `http://127.0.0.1:${server.httpPort}`);


async function publishVersion(version: number): Promise<void> {
  await publishSyntheticVersion(repo, REF, dir, key, version);
}

beforeAll(async () => {
  dir = await makeTempDir("rollout");
  repo = await initServerRepo(dir, key);
  await publishVersion(1);
  server = await start();
  for (let i = 0; i < 20; i++) {
    const device = new SimulatedDevice(`sim-${String(i).padStart(2, "0")}`, key.publicKey, ["fleet"], { enrollmentSecret: TEST_ENROLLMENT_SECRET });
    await device.connect(server.mqttPort!);
    devices.push(device);
  }
  await until(async () => (await server.store.listDevices()).filter((d) => d.reportedGroups.includes("fleet")).length === 20 && true, "20 devices enrolled");
  // Rollouts select on the groups the operator assigns, not on those the devices report.
  for (const device of devices) await api(`devices/${device.id}/groups`, { groups: ["fleet"] });
});
afterAll(async () => {
  for (const device of devices) await device.disconnect();
  await server?.close();
  await removeTree(dir);
});

describe("rollouts", () => {
  it("rejects bad rollout requests with the reason", async () => {
    expect((await api("rollouts", { ref: REF, select: {}, waves: "100%" })).json.error.message).toBe("select: name at least one group, tag or device");
    expect((await api("rollouts", { ref: REF, select: { groups: ["fleet"] }, waves: "50%,10%" })).json.error.message).toMatch(/waves must grow/);
    expect((await api("rollouts", { ref: REF, select: { groups: ["fleet"] }, waveDelay: "soon" })).json.error.message).toBe("waveDelay: 'soon' is not a duration like 90s, 10m, 6h or 30d");
    expect((await api("rollouts", { ref: REF, version: "9", select: { groups: ["fleet"] } })).json.error.message).toMatch(/publishes .* version 1, not 9/);
    expect((await api("rollouts", { ref: REF, select: { devices: ["nobody"] } })).status).toBe(400);
    expect((await api("rollouts", { ref: REF, select: { groups: ["fleet"] }, colour: "red" })).json.error.message).toMatch(/unknown field colour/);
  });

  it("rolls out in waves and pauses itself when a wave's failures pass the threshold, saying why", async () => {
    await publishVersion(2);
    const created = await api("rollouts", { ref: REF, select: { groups: ["fleet"] }, waves: "10%,50%,100%", waveDelay: "0s", waveTimeout: "30s", maxFailures: "10%" });
    expect(created.status).toBe(201);
    const rollout = created.json.rollout;
    expect(rollout.waves.map((w: { devices: number }) => w.devices)).toEqual([2, 8, 10]);
    // Every device of the second wave fails its health check and rolls back.
    const secondWave = new Set(rollout.devices.filter((m: { wave: number }) => m.wave === 1).map((m: { deviceId: string }) => m.deviceId));
    for (const device of devices) if (secondWave.has(device.id)) device.behaviour = "rolled-back";

    const paused = await until(async () => {
      const { json } = await api(`rollouts/${rollout.id}`);
      return json.rollout.state === undefined && json.rollout.progress.state === "paused" ? json.rollout : null;
    }, "the rollout to pause");
    expect(paused.pauseReason).toMatch(/^\d+ of 20 devices failed or rolled back \(\d+\.\d%\), above the 10% threshold$/);
    expect(paused.waves[0]).toMatchObject({ healthy: 2, failed: 0 });
    expect(paused.waves[1].rolledBack).toBeGreaterThan(2);
    expect(paused.waves[2]).toMatchObject({ pending: 10, inProgress: 0 });
    const rolledBack = paused.devices.find((m: { status: string }) => m.status === "rolled-back");
    expect(rolledBack.detail).toBe("required health check app.sh failed");
    const thirdWave = devices.filter((d) => paused.devices.some((m: { deviceId: string; wave: number }) => m.deviceId === d.id && m.wave === 2));
    expect(thirdWave.every((d) => d.commandsReceived.length === 0)).toBe(true);

    expect((await api(`rollouts/${rollout.id}/abort`, {})).json.rollout.progress.state).toBe("aborted");
    expect((await api(`rollouts/${rollout.id}/resume`, {})).status).toBe(409);
    for (const device of devices) device.behaviour = "healthy";
  });

  it("continues after a restart, catches up an offline device, and sends nobody a second command", async () => {
    await publishVersion(3);
    const [offline, ...rest] = devices.slice(0, 5);
    await offline!.disconnect();
    await until(async () => (await server.store.getDevice(offline!.id))?.online === false, "the device to be offline");
    const created = await api("rollouts", { ref: REF, select: { devices: devices.slice(0, 5).map((d) => d.id) }, waves: "40%,100%", waveDelay: "1s", waveTimeout: "60s", maxFailures: "50%" });
    const id = created.json.rollout.id;

    // Restart in the middle: the rollout is running and some commands are out.
    await server.close();
    for (const device of rest) await device.disconnect();
    server = await start();
    for (const device of rest) await device.connect(server.mqttPort!);
    expect((await api(`rollouts/${id}`)).json.rollout.progress.state).toBe("running");
    await new Promise((r) => setTimeout(r, 1000));
    expect(offline!.commandsReceived.filter((c) => c === id)).toEqual([]);

    await offline!.connect(server.mqttPort!);
    const done = await until(async () => {
      const { json } = await api(`rollouts/${id}`);
      return json.rollout.progress.state === "completed" ? json.rollout : null;
    }, "the rollout to complete").catch(async (error) => {
      const { json } = await api(`rollouts/${id}`);
      throw new Error(`${error.message}: ${JSON.stringify({ progress: json.rollout.progress, devices: json.rollout.devices.map((m: { deviceId: string; wave: number; status: string }) => [m.deviceId, m.wave, m.status]), online: (await server.store.listDevices()).slice(0, 5).map((d) => [d.id, d.online]), got: devices.slice(0, 5).map((d) => [d.id, d.commandsReceived, d.errors]) })}`);
    });
    expect(done.devices.every((m: { status: string }) => m.status === "healthy")).toBe(true);
    for (const device of devices.slice(0, 5)) {
      expect(device.distinctCommands().filter((c) => c === id)).toEqual([id]);
      expect(device.booted.version).toBe("3");
    }
  });

  it("is steered from the command line through the REST API", async () => {
    const cli = (...args: string[]) =>
      execa(process.execPath, [SERVER_CLI, "rollout", ...args, "--server", `http://127.0.0.1:${server.httpPort}`], { env: { APT_OSTREE_ADMIN_TOKEN: TOKEN }, reject: false });
    const listed = await cli("list", "--json");
    expect(listed.exitCode).toBe(0);
    const rollouts = JSON.parse(listed.stdout.split("\n").at(-1)!);
    expect(rollouts.map((r: { progress: { state: string } }) => r.progress.state)).toEqual(["aborted", "completed"]);
    const shown = await cli("show", rollouts[0].id);
    expect(shown.stdout).toMatch(new RegExp(`^${rollouts[0].id}  ${REF} 2  aborted\n  Reason: aborted by the operator\n  Failure threshold: 10%\n  Wave 1 \\(10%\\): 2 devices, 2 healthy`));
    const pause = await cli("pause", rollouts[1].id);
    expect(pause.exitCode).toBe(1);
    expect(pause.stderr.trim()).toBe(`error: server answered 409: cannot pause rollout ${rollouts[1].id}: it is completed`);
    const devicesCli = await execa(process.execPath, [SERVER_CLI, "device", "list", "--server", `http://127.0.0.1:${server.httpPort}`], { env: { APT_OSTREE_ADMIN_TOKEN: TOKEN } });
    expect(devicesCli.stdout.split("\n")).toHaveLength(21);
    expect(devicesCli.stdout).toMatch(/^sim-00 +accepted +online +healthy +3 \([0-9a-f]{12}\) +fleet$/m);
    const bad = await cli("create", "--ref", REF, "--select", "colour=red");
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/--select: 'colour=red' is not group=NAME, tag=NAME or device=ID/);
  });

  it("selects devices by the tags an operator sets", async () => {
    const cli = (...args: string[]) =>
      execa(process.execPath, [SERVER_CLI, "device", ...args, "--server", `http://127.0.0.1:${server.httpPort}`], { env: { APT_OSTREE_ADMIN_TOKEN: TOKEN }, reject: false });
    // sim-01 and sim-02 are among the devices reconnected after the restart above.
    expect((await cli("tags", "sim-01", "canary", "eu")).stdout).toBe("sim-01: tags canary, eu");
    expect((await api("devices/sim-02/tags", { tags: ["canary"] })).json.device.tags).toEqual(["canary"]);
    const bad = await api("devices/sim-12/tags", { tags: ["Not A Tag"] });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/tags\.0: tags are lowercase letters/);
    expect((await api("devices/ghost/tags", { tags: [] })).status).toBe(404);
    const { json } = await api("rollouts", { ref: REF, select: { tags: ["canary"] }, waves: "100%", waveDelay: "0s", waveTimeout: "30s" });
    expect(json.rollout.devices.map((m: { deviceId: string }) => m.deviceId).sort()).toEqual(["sim-01", "sim-02"]);
    await until(async () => (await api(`rollouts/${json.rollout.id}`)).json.rollout.progress.state === "completed", "the tagged rollout to complete");
  });

  it("summarises the fleet per version, per state and per rollout, in the API and in /metrics", async () => {
    const { json } = await api("fleet");
    expect(json).toMatchObject({ devices: 20, byEnrollment: { accepted: 20 } });
    expect(json.byVersion["3"]).toBe(5);
    expect(Object.values(json.byVersion as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(20);
    expect(json.rollouts.map((r: { state: string; rolledBack: number }) => r.state)).toEqual(["aborted", "completed", "completed"]);
    expect(json.rollouts[0].rolledBack).toBeGreaterThan(2);
    const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^aptostree_rollouts\{state="completed"\} 2$/m);
    expect(metrics).toMatch(/^aptostree_devices_enrollment\{enrollment="accepted"\} 20$/m);
    expect(metrics).toMatch(/^aptostree_devices\{state="healthy"\} \d+$/m);
    const openapi = await (await fetch(`http://127.0.0.1:${server.httpPort}/api/v1/openapi.json`)).json();
    expect(Object.keys(openapi.paths)).toEqual(
      expect.arrayContaining(["/api/v1/devices", "/api/v1/devices/{id}", "/api/v1/devices/{id}/accept", "/api/v1/devices/{id}/tags", "/api/v1/rollouts", "/api/v1/rollouts/{id}", "/api/v1/rollouts/{id}/pause", "/api/v1/releases", "/api/v1/fleet"]),
    );
  });
});
