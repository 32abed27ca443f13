/**
 * The external broker as shipped (docs/mosquitto/: TLS, client certificates, identities the
 * broker enforces), run by a real mosquitto started here. Devices enroll over HTTPS with their
 * signed token and get a certificate for their own key; the server presents one it issued
 * itself. What one device's certificate cannot do to another is mosquitto's doing.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair, privateKeyPem, type Ed25519KeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { signReport } from "../../../shared/wire/report.ts";
import { DEFAULT_TOPIC_PREFIX, deviceTopic } from "../../../shared/wire/topics.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { initTlsDir } from "../../../server/tls/tls-dir.ts";
import { createCa, issueClientCertificate } from "../../../server/tls/certificates.ts";
import { connectMqtt, type MqttLink } from "../../../device/agent/mqtt-link.ts";
import { testServerSettings } from "../../helpers/server-settings.ts";
import { SimulatedDevice } from "../../helpers/simulated-device.ts";
import { initServerRepo, publishSyntheticVersion } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";
import { startMosquittoTls, type RunningMosquitto } from "../../helpers/mosquitto.ts";
import { adminApi } from "../../helpers/admin-api.ts";
import { trustingFetch } from "../../helpers/serve-process.ts";

const REF = "test/bookworm/test-machine/test-image";
const key = generateKeyPair();
let dir: string;
let brokerDir: string;
let ca: string;
let caFile: string;
let mosquitto: RunningMosquitto & { log: string };
let server: RunningServer;
let fetcher: typeof fetch;
const a = new SimulatedDevice("tls-a", key.publicKey, []);
const b = new SimulatedDevice("tls-b", key.publicKey, []);
const certificates = new Map<string, string>();
const clients: MqttClient[] = [];
let link: MqttLink | null = null;

const base = () => `https://127.0.0.1:${server.httpPort}`;
const call = adminApi(base, () => fetcher);
const api = async (path: string, body?: unknown) => (await call(path, body)).json;

/** POST /api/v1/enroll with a fresh token signed by `signer`. */
async function enroll(id: string, signer: Ed25519KeyPair): Promise<{ status: number; json: any }> {
  const res = await fetcher(`${base()}/api/v1/enroll`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: createDeviceToken(id, signer, new Date()) }) });
  return { status: res.status, json: await res.json() };
}

/** A bare mqtt.js client on mosquitto's TLS port; rejects when the broker refuses it. */
async function rawClient(options: mqtt.IClientOptions): Promise<MqttClient> {
  const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${mosquitto.port}`, { ca, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...options });
  clients.push(client);
  return client;
}

beforeAll(async () => {
  dir = await makeTempDir("external-broker-tls");
  const tls = await initTlsDir(join(dir, "tls"), ["localhost", "127.0.0.1"]);
  caFile = tls.ca;
  ca = await readFile(caFile, "utf8");
  fetcher = trustingFetch(ca);
  // Its own directory: mosquitto drops to its own user, which cannot enter `dir` (0700).
  brokerDir = await makeTempDir("external-broker-tls-mosquitto");
  mosquitto = await startMosquittoTls(brokerDir, tls.dir);
  const repo = await initServerRepo(dir, key);
  await publishSyntheticVersion(repo, REF, dir, key, 1);
  server = await startServer(
    { ...testServerSettings({ repo, data: join(dir, "data"), mqttUrl: mosquitto.serverUrl, signingKey: join(dir, "server.secret"), tls: { dir: tls.dir, create: false } }), tickMilliseconds: 100 },
    silentLogger(),
  );
});
afterAll(async () => {
  await link?.close();
  await Promise.all(clients.map((client) => client.endAsync(true).catch(() => undefined)));
  await a.disconnect().catch(() => undefined);
  await b.disconnect().catch(() => undefined);
  await server?.close();
  mosquitto?.stop();
  await removeTree(dir);
  await removeTree(brokerDir);
});

describe("mosquitto as shipped in docs/mosquitto/, with the server's certificates", () => {
  it("enrolls a device over HTTPS: pending until accepted, then a certificate for its own key, CN its id", async () => {
    const first = await enroll("tls-a", a.key);
    expect(first).toMatchObject({ status: 202, json: { deviceId: "tls-a", enrollment: "pending" } });
    expect(await server.store.getDevice("tls-a")).toMatchObject({ enrollment: "pending", publicKey: Buffer.from(a.key.publicKey).toString("base64") });
    await api("devices/tls-a/accept", {});
    await enroll("tls-b", b.key);
    await api("devices/tls-b/accept", {});
    for (const device of [a, b]) {
      const { status, json } = await enroll(device.id, device.key);
      expect(status).toBe(200);
      const certificate = new X509Certificate(json.certificate);
      expect(certificate.subject).toBe(`CN=${device.id}`);
      expect(certificate.checkIssued(new X509Certificate(ca))).toBe(true);
      expect(certificate.verify(new X509Certificate(ca).publicKey)).toBe(true);
      expect(certificate.publicKey.export({ format: "der", type: "spki" }).subarray(-32)).toEqual(Buffer.from(device.key.publicKey));
      expect(Date.parse(certificate.validTo) - Date.now()).toBeGreaterThan(6 * 86_400_000);
      certificates.set(device.id, json.certificate);
    }
  });

  it("refuses an enrollment whose token another key signed, or that is not a token", async () => {
    const forged = await enroll("tls-a", generateKeyPair());
    expect(forged).toMatchObject({ status: 403, json: { error: { code: "E_ENROLLMENT_REFUSED", message: expect.stringMatching(/token key differs from the key 'tls-a' enrolled with/) } } });
    const res = await fetcher(`${base()}/api/v1/enroll`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: "not.a-token" }) });
    expect(res.status).toBe(401);
    expect((await res.json()).error.message).toMatch(/device token rejected/);
  });

  it("lets devices report and take a rollout through mosquitto, with their certificates", async () => {
    await a.connect(mosquitto.port, { tls: { ca, cert: certificates.get("tls-a")! } });
    await b.connect(mosquitto.port, { tls: { ca, cert: certificates.get("tls-b")! } });
    await until(async () => (await server.store.getDevice("tls-a"))!.lastCounter !== null && (await server.store.getDevice("tls-b"))!.lastCounter !== null, "reports from both devices");
    await until(async () => (await server.store.getDevice("tls-b"))!.online, "tls-b online");
    await publishSyntheticVersion(join(dir, "repo"), REF, dir, key, 2);
    const { rollout } = await api("rollouts", { ref: REF, select: { devices: ["tls-a"] }, waves: "100%", waveDelay: "0s", waveTimeout: "30s" });
    const done = await until(async () => {
      const now = (await api(`rollouts/${rollout.id}`)).rollout;
      return now.progress.state === "completed" ? now : null;
    }, "the rollout to complete");
    expect(done.devices).toEqual([expect.objectContaining({ deviceId: "tls-a", status: "healthy" })]);
    expect(a.booted.version).toBe("2");
    expect(b.commandsReceived).toEqual([]);
  });

  it("refuses a client without a certificate, an anonymous plain client and a certificate from another CA", async () => {
    await expect(rawClient({ clientId: "tls-x" })).rejects.toThrow();
    await expect(mqtt.connectAsync(`mqtt://127.0.0.1:${mosquitto.port}`, { clientId: "anon", reconnectPeriod: 0, connectTimeout: 3000 })).rejects.toThrow();
    const stranger = generateKeyPair();
    const otherCa = await createCa({ commonName: "someone else" });
    const foreign = await issueClientCertificate(otherCa, { commonName: "tls-b", ed25519PublicKey: stranger.publicKey });
    await expect(rawClient({ clientId: "tls-b", cert: foreign.certificate, key: privateKeyPem(stranger.seed) })).rejects.toThrow();
    expect(await server.store.getDevice("tls-b")).toMatchObject({ online: true });
  });

  it("keeps A's certificate from publishing B's online flag or state, reading B's commands, or taking B's session", async () => {
    const before = (await server.store.getDevice("tls-b"))!;
    let bKicked = false;
    (b as unknown as { client: MqttClient }).client.once("close", () => (bKicked = true));
    // A claims B's client id and username: mosquitto makes both A's certificate CN.
    const impostor = await rawClient({ clientId: "tls-b", username: "tls-b", cert: certificates.get("tls-a")!, key: privateKeyPem(a.key.seed) });
    await impostor.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, "tls-b", "online"), "offline", { qos: 1, retain: true });
    const forged = signReport({ deviceId: "tls-b", counter: before.lastCounter! + 100, sent: new Date().toISOString(), state: "failed" }, a.key);
    await impostor.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, "tls-b", "state"), forged, { qos: 1 });
    // mosquitto 2.0 grants a 3.1.1 subscription it may not serve, and checks the ACL at delivery.
    const read: string[] = [];
    impostor.on("message", (topic) => read.push(topic));
    await impostor.subscribeAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, "tls-b", "cmd"), { qos: 1 });
    const refusedByB = b.errors.length;
    await server.broker.publish(deviceTopic(DEFAULT_TOPIC_PREFIX, "tls-b", "cmd"), "for tls-b only");
    // B gets it (and refuses it: it is no signed command); the impostor does not.
    await until(() => b.errors.length > refusedByB, "tls-b to receive the message on its own topic");
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(read).toEqual([]);
    expect(bKicked).toBe(false);
    expect(await server.store.getDevice("tls-b")).toMatchObject({ online: true, lastCounter: before.lastCounter, state: before.state });
    const log = await readFile(mosquitto.log, "utf8");
    expect(log).toMatch(/New client connected from 127\.0\.0\.1:\d+ as tls-a \(p2, c1, k\d+, u'tls-a'\)/);
    expect(log).not.toMatch(/Client tls-b already connected/);
    await b.reportNow("idle");
    await until(async () => (await server.store.getDevice("tls-b"))!.lastCounter! > before.lastCounter!, "tls-b still reports");
  });

  it("connects the agent's MQTT link with mqttAuth 'certificate': pending, then accepted, then its certificate and its commands", async () => {
    const stateDir = join(dir, "agent-state");
    const { loadIdentity } = await import("../../../device/agent/identity.ts");
    const identity = await loadIdentity(stateDir, "tls-agent");
    const commands: Buffer[] = [];
    link = connectMqtt({
      settings: { mqtt: `mqtts://127.0.0.1:${mosquitto.port}`, mqttAuth: "certificate", groups: [], caFile, server: base(), stateDir },
      identity,
      enrollmentSecret: null,
      onCommand: (payload) => commands.push(payload),
      onConnected: () => undefined,
      log: silentLogger(),
    });
    await until(async () => (await server.store.getDevice("tls-agent"))?.enrollment === "pending", "the agent to enroll over HTTPS");
    expect(link.connected()).toBe(false);
    await api("devices/tls-agent/accept", {});
    expect(await link.waitConnected(15_000)).toBe(true);
    await until(async () => (await server.store.getDevice("tls-agent"))!.online, "the agent's online flag through mosquitto");
    const kept = new X509Certificate(await readFile(join(stateDir, "mqtt-client.pem")));
    expect(kept.subject).toBe("CN=tls-agent");
    const { rollout } = await api("rollouts", { ref: REF, select: { devices: ["tls-agent"] }, waves: "100%", waveDelay: "0s", waveTimeout: "30s" });
    await until(() => commands.some((payload) => payload.toString().includes(rollout.id)), "the rollout's command on the agent's topic");
  });

  it("gives a revoked device no new certificate; its current one connects until it expires, and the server ignores it", async () => {
    await api("devices/tls-b/revoke", {});
    const refused = await enroll("tls-b", b.key);
    expect(refused).toMatchObject({ status: 403, json: { error: { code: "E_ENROLLMENT_REFUSED", message: expect.stringMatching(/revoked/) } } });
    const before = (await server.store.getDevice("tls-b"))!;
    await b.disconnect();
    await b.connect(mosquitto.port, { tls: { ca, cert: certificates.get("tls-b")! } });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await server.store.getDevice("tls-b")).toMatchObject({ enrollment: "revoked", lastCounter: before.lastCounter });
  });
});
