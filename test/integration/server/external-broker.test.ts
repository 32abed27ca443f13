/**
 * The server on an external broker: a real mosquitto started here with the ACL from
 * docs/mosquitto/. Devices enroll by hello, report, and take a rollout through it; the topic ACL
 * is mosquitto's, and forged reports still fail on their signatures.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { signReport } from "../../../shared/wire/report.ts";
import { DEFAULT_TOPIC_PREFIX, deviceTopic } from "../../../shared/wire/topics.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { testServerSettings } from "../../helpers/server-settings.ts";
import { SimulatedDevice } from "../../helpers/simulated-device.ts";
import { initServerRepo, publishSyntheticVersion } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";
import { startMosquitto, type RunningMosquitto } from "../../helpers/mosquitto.ts";
import { adminApi } from "../../helpers/admin-api.ts";

const REF = "test/bookworm/test-machine/test-image";
const key = generateKeyPair();
let dir: string;
let mosquitto: RunningMosquitto;
let brokerPort: number;
let server: RunningServer;
const a = new SimulatedDevice("ext-a", key.publicKey, ["lab"]);
const b = new SimulatedDevice("ext-b", key.publicKey, ["lab"]);


const call = adminApi(() => `http://127.0.0.1:${server.httpPort}`);
const api = async (path: string, body?: unknown) => (await call(path, body)).json;

beforeAll(async () => {
  dir = await makeTempDir("external-broker");
  mosquitto = await startMosquitto(dir);
  brokerPort = mosquitto.port;

  const repo = await initServerRepo(dir, key);
  await publishSyntheticVersion(repo, REF, dir, key, 1);
  server = await startServer(
    { ...testServerSettings({ repo, data: join(dir, "data"), mqttUrl: mosquitto.serverUrl, signingKey: join(dir, "server.secret") }), tickMilliseconds: 100 },
    silentLogger(),
  );
});
afterAll(async () => {
  await a.disconnect().catch(() => undefined);
  await b.disconnect().catch(() => undefined);
  await server?.close();
  mosquitto?.stop();
  await removeTree(dir);
});

describe("serve with --mqtt-url and a real mosquitto", () => {
  it("enrolls devices by their signed hello, pending until accepted", async () => {
    expect(server.mqttPort).toBeNull();
    await a.connect(brokerPort, { external: true });
    await b.connect(brokerPort, { external: true });
    await until(async () => await server.store.getDevice("ext-a") && await server.store.getDevice("ext-b"), "both hellos");
    expect(await server.store.getDevice("ext-a")).toMatchObject({ enrollment: "pending", lastCounter: null });
    await api("devices/ext-a/accept", {});
    await api("devices/ext-b/accept", {});
    await a.reportNow("idle");
    await b.reportNow("idle");
    await until(async () => (await server.store.getDevice("ext-a"))!.lastCounter !== null && (await server.store.getDevice("ext-b"))!.lastCounter !== null, "reports after acceptance");
    expect(await server.store.getDevice("ext-a")).toMatchObject({ enrollment: "accepted", state: "idle", groups: [], reportedGroups: ["lab"] });
  });

  it("keeps A from publishing as B (mosquitto's ACL) and from forging B's reports (signatures)", async () => {
    const before = (await server.store.getDevice("ext-b"))!.lastCounter!;
    const forged = signReport({ deviceId: "ext-b", counter: before + 100, sent: new Date().toISOString(), state: "failed" }, a.key);
    await a.publishRaw(deviceTopic(DEFAULT_TOPIC_PREFIX, "ext-b", "state"), forged);
    await new Promise((r) => setTimeout(r, 500));
    expect(await server.store.getDevice("ext-b")).toMatchObject({ lastCounter: before, state: "idle" });
  });

  it("rolls out through the external broker", async () => {
    await publishSyntheticVersion(join(dir, "repo"), REF, dir, key, 2);
    const { rollout } = await api("rollouts", { ref: REF, select: { devices: ["ext-a"] }, waves: "100%", waveDelay: "0s", waveTimeout: "30s" });
    const done = await until(async () => {
      const now = (await api(`rollouts/${rollout.id}`)).rollout;
      return now.progress.state === "completed" ? now : null;
    }, "the rollout to complete");
    expect(done.devices).toEqual([expect.objectContaining({ deviceId: "ext-a", status: "healthy" })]);
    expect(a.booted.version).toBe("2");
    expect(b.commandsReceived).toEqual([]);
  });
});
