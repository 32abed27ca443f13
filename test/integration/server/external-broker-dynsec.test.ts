/**
 * serve --mqtt-dynsec against a real mosquitto run with docs/mosquitto/mosquitto-dynsec.conf and
 * a dynamic-security.json from `mosquitto_ctrl dynsec init`, as shipped: the server keeps the
 * plugin in step with the store, so a revoked device is cut off at once and only the devices the
 * operator put in a group read that group's command topic. Devices are bare mqtt.js clients with
 * the certificates the server issued them, so every grant and refusal is mosquitto's.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair, privateKeyPem, type Ed25519KeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { DEFAULT_TOPIC_PREFIX as P, deviceTopic, groupCommandTopic } from "../../../shared/wire/topics.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { SqliteFleetStore } from "../../../server/fleet/store-sqlite.ts";
import { initTlsDir } from "../../../server/tls/tls-dir.ts";
import { testServerSettings } from "../../helpers/server-settings.ts";
import { initServerRepo } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";
import { startMosquittoTls, type RunningMosquitto } from "../../helpers/mosquitto.ts";
import { adminApi } from "../../helpers/admin-api.ts";
import { trustingFetch } from "../../helpers/serve-process.ts";

const key = generateKeyPair();
let dir: string;
let brokerDir: string;
let tlsDir: string;
let ca: string;
let repo: string;
let mosquitto: RunningMosquitto & { log: string };
let server: RunningServer | null = null;
let fetcher: typeof fetch;
const keys = new Map<string, Ed25519KeyPair>();
const certificates = new Map<string, string>();
const clients: MqttClient[] = [];

const base = () => `https://127.0.0.1:${server!.httpPort}`;
const call = adminApi(base, () => fetcher);
const api = async (path: string, body?: unknown) => {
  const { status, json } = await call(path, body);
  if (status >= 300) throw new Error(`${path}: ${status} ${JSON.stringify(json)}`);
  return json;
};

async function start(): Promise<RunningServer> {
  server = await startServer({ ...testServerSettings({ repo, data: join(dir, "data"), mqttUrl: mosquitto.serverUrl, mqttDynsec: true, tls: { dir: tlsDir, create: false } }), tickMilliseconds: 100 }, silentLogger());
  return server;
}

/** The dynsec clients mosquitto saved (it rewrites the file at each change): username -> its dynsec group names. */
async function savedClients(): Promise<Map<string, string[]>> {
  const saved = JSON.parse(await readFile(join(brokerDir, "dynamic-security.json"), "utf8")) as { clients: { username: string }[]; groups: { groupname: string; clients?: { username: string }[] }[] };
  const memberOf = (username: string) => saved.groups.filter((g) => (g.clients ?? []).some((c) => c.username === username)).map((g) => g.groupname);
  return new Map(saved.clients.map((c) => [c.username, memberOf(c.username)]));
}

/** Enrolls over HTTPS, accepts, and keeps the certificate the server issues. */
async function enrollAccepted(id: string, groups: string[]): Promise<void> {
  const signer = generateKeyPair();
  keys.set(id, signer);
  const post = async () => {
    const res = await fetcher(`${base()}/api/v1/enroll`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: createDeviceToken(id, signer, new Date()) }) });
    return { status: res.status, json: await res.json() };
  };
  expect((await post()).status).toBe(202);
  await api(`devices/${id}/accept`, {});
  if (groups.length > 0) await api(`devices/${id}/groups`, { groups });
  const { status, json } = await post();
  expect(status).toBe(200);
  certificates.set(id, json.certificate);
}

interface Device {
  client: MqttClient;
  received: string[];
  closedAt: number | null;
}

/** A device's connection with its certificate; `received` collects "topic payload". */
async function connectDevice(id: string): Promise<Device> {
  const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${mosquitto.port}`, { ca, cert: certificates.get(id)!, key: privateKeyPem(keys.get(id)!.seed), clientId: id, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4 });
  clients.push(client);
  const device: Device = { client, received: [], closedAt: null };
  client.on("message", (topic, payload) => device.received.push(`${topic} ${payload.toString()}`));
  client.on("close", () => (device.closedAt ??= Date.now()));
  return device;
}

/** The SUBACK code mosquitto grants (1) or refuses with (128). */
async function subscribe(device: Device, topic: string): Promise<number> {
  try {
    return (await device.client.subscribeAsync(topic, { qos: 1 }))[0]!.qos;
  } catch (error) {
    const granted = (error as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw error;
    return granted[0]!;
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  dir = await makeTempDir("external-broker-dynsec");
  tlsDir = (await initTlsDir(join(dir, "tls"), ["localhost", "127.0.0.1"])).dir;
  ca = await readFile(join(tlsDir, "ca.pem"), "utf8");
  fetcher = trustingFetch(ca);
  brokerDir = await makeTempDir("external-broker-dynsec-mosquitto");
  mosquitto = await startMosquittoTls(brokerDir, tlsDir, { dynsec: true });
  repo = await initServerRepo(dir, key);
  await start();
});
afterAll(async () => {
  await Promise.all(clients.map((client) => client.endAsync(true).catch(() => undefined)));
  await server?.close();
  mosquitto?.stop();
  await removeTree(dir);
  await removeTree(brokerDir);
});

describe("serve --mqtt-dynsec with mosquitto's dynamic-security plugin, as shipped", () => {
  it("gives the server its role at the first start and every accepted device a client of its own", async () => {
    await enrollAccepted("dyn-a", ["lab"]);
    await enrollAccepted("dyn-b", []);
    await enrollAccepted("dyn-c", []);
    const saved = await savedClients();
    expect([...saved.keys()].sort()).toEqual(["apt-ostree:server", "dyn-a", "dyn-b", "dyn-c"]);
    expect(saved.get("dyn-a")).toEqual(["apt-ostree:group:lab"]);
    expect(saved.get("dyn-b")).toEqual([]);
    const log = await readFile(mosquitto.log, "utf8");
    expect(log).toMatch(/dynsec: \S+ \| addClientRole \| username=apt-ostree:server \| rolename=apt-ostree:server/);
  });

  it("lets a device use its own topics and no other device's", async () => {
    const b = await connectDevice("dyn-b");
    expect(await subscribe(b, deviceTopic(P, "dyn-b", "cmd"))).toBe(1);
    expect(await subscribe(b, deviceTopic(P, "dyn-c", "cmd"))).toBe(128);
    await server!.broker.publish(deviceTopic(P, "dyn-b", "cmd"), "for dyn-b");
    await server!.broker.publish(deviceTopic(P, "dyn-c", "cmd"), "for dyn-c");
    await until(() => b.received.includes(`${deviceTopic(P, "dyn-b", "cmd")} for dyn-b`), "dyn-b's own command");
    await b.client.publishAsync(deviceTopic(P, "dyn-c", "online"), "offline", { qos: 1 });
    await pause(300);
    expect(b.received).toEqual([`${deviceTopic(P, "dyn-b", "cmd")} for dyn-b`]);
    expect(await readFile(mosquitto.log, "utf8")).toMatch(/Denied PUBLISH from dyn-b \(d0, q1, r0, m\d+, 'apt-ostree\/devices\/dyn-c\/online'/);
    await b.client.endAsync();
  });

  it("delivers a group's command to the devices the operator put in it, and to no other", async () => {
    const a = await connectDevice("dyn-a");
    const b = await connectDevice("dyn-b");
    const lab = groupCommandTopic(P, "lab");
    expect(await subscribe(a, lab)).toBe(1);
    expect(await subscribe(b, lab)).toBe(128);
    await server!.broker.publish(lab, "lab command 1");
    await until(() => a.received.includes(`${lab} lab command 1`), "dyn-a to get the lab command");
    await pause(300);
    expect(b.received).toEqual([]);

    // Assigning groups moves the client between dynsec groups; mosquitto ends the connection,
    // and the device's next subscription is judged by its new ACL.
    await api("devices/dyn-b/groups", { groups: ["lab"] });
    await api("devices/dyn-a/groups", { groups: [] });
    await until(() => a.closedAt !== null && b.closedAt !== null, "mosquitto to end both connections on the group change", 5000);
    const a2 = await connectDevice("dyn-a");
    const b2 = await connectDevice("dyn-b");
    expect(await subscribe(a2, lab)).toBe(128);
    expect(await subscribe(b2, lab)).toBe(1);
    await server!.broker.publish(lab, "lab command 2");
    await until(() => b2.received.includes(`${lab} lab command 2`), "dyn-b, now in lab, to get the lab command");
    await pause(300);
    expect(a2.received).toEqual([]);
    await Promise.all([a2.client.endAsync(), b2.client.endAsync()]);
  });

  it("ends a revoked device's connection within seconds, and refuses its certificate everything after", async () => {
    const c = await connectDevice("dyn-c");
    expect(await subscribe(c, deviceTopic(P, "dyn-c", "cmd"))).toBe(1);
    await server!.broker.publish(deviceTopic(P, "dyn-c", "cmd"), "before");
    await until(() => c.received.length === 1, "dyn-c's command before the revocation");
    const revokedAt = Date.now();
    await api("devices/dyn-c/revoke", {});
    await until(() => c.closedAt, "mosquitto to end dyn-c's connection", 5000);
    expect(c.closedAt! - revokedAt).toBeLessThan(3000);
    expect((await savedClients()).has("dyn-c")).toBe(false);

    // mosquitto never asks the plugin about a certificate login: the certificate still connects.
    const again = await connectDevice("dyn-c");
    expect(await subscribe(again, deviceTopic(P, "dyn-c", "cmd"))).toBe(128);
    await again.client.publishAsync(deviceTopic(P, "dyn-c", "state"), "forged", { qos: 1 });
    await server!.broker.publish(deviceTopic(P, "dyn-c", "cmd"), "after");
    await pause(500);
    expect(again.received).toEqual([]);
    expect(await readFile(mosquitto.log, "utf8")).toMatch(/Denied PUBLISH from dyn-c \(d0, q1, r0, m\d+, 'apt-ostree\/devices\/dyn-c\/state'/);
    await again.client.endAsync();
  });

  it("ends the connection of a re-keyed device's old certificate", async () => {
    const b = await connectDevice("dyn-b");
    expect(await subscribe(b, deviceTopic(P, "dyn-b", "cmd"))).toBe(1);
    await api("devices/dyn-b/rekey", { publicKey: Buffer.from(generateKeyPair().publicKey).toString("base64") });
    await until(() => b.closedAt, "mosquitto to end dyn-b's connection at the rekey", 5000);
    expect((await savedClients()).has("dyn-b")).toBe(true);
  });

  it("resyncs at start: what changed in the store while the server was down reaches mosquitto", async () => {
    const a = await connectDevice("dyn-a");
    expect(await subscribe(a, deviceTopic(P, "dyn-a", "cmd"))).toBe(1);
    await server!.close();
    server = null;
    // The store changes with nobody to tell mosquitto: dyn-a revoked, dyn-b moved to lab2.
    const store = new SqliteFleetStore(join(dir, "data", "fleet.db"));
    await store.revokeDevice("dyn-a", new Date());
    await store.setDeviceGroups("dyn-b", ["lab2"], new Date());
    await store.close();
    await pause(500);
    expect(a.closedAt).toBeNull();
    expect((await savedClients()).get("dyn-b")).toEqual(["apt-ostree:group:lab"]);

    await start();
    await until(() => a.closedAt, "mosquitto to end dyn-a's connection at the resync", 5000);
    const saved = await savedClients();
    expect(saved.has("dyn-a")).toBe(false);
    expect(saved.get("dyn-b")).toEqual(["apt-ostree:group:lab2"]);
    const b = await connectDevice("dyn-b");
    // dyn-b's current key is the one the rekey gave it; its old certificate is still valid (documented limit).
    expect(await subscribe(b, groupCommandTopic(P, "lab2"))).toBe(1);
    expect(await subscribe(b, groupCommandTopic(P, "lab"))).toBe(128);
    const log = await readFile(mosquitto.log, "utf8");
    expect(log).toMatch(/dynsec: \S+ \| deleteGroup \| groupname=apt-ostree:group:lab\b/);
  });
});
