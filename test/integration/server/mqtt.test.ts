import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { generateKeyPair, type Ed25519KeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { signReport, type Report } from "../../../shared/wire/report.ts";
import { deviceTopic } from "../../../shared/wire/topics.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";
import { TEST_ADMIN_TOKEN, testServerSettings } from "../../helpers/server-settings.ts";

const P = "apt-ostree/";
const TOKEN = TEST_ADMIN_TOKEN;
const keys: Record<string, Ed25519KeyPair> = { "dev-a": generateKeyPair(), "dev-b": generateKeyPair() };
let dir: string;
let server: RunningServer;
const clients: MqttClient[] = [];

function connect(id: string, key = keys[id]!): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${server.mqttPort!}`, {
      clientId: id,
      username: id,
      password: createDeviceToken(id, key, new Date()),
      reconnectPeriod: 0,
      protocolVersion: 4,
      will: { topic: deviceTopic(P, id, "online"), payload: Buffer.from("offline"), qos: 1, retain: true },
    });
    client.once("connect", () => {
      clients.push(client);
      resolve(client);
    });
    client.once("error", (error) => {
      client.end(true);
      reject(error);
    });
  });
}

const api = (path: string, method = "GET") => fetch(`http://127.0.0.1:${server.httpPort}/api/v1/${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });


function report(id: string, counter: number, extra: Partial<Report> = {}): Report {
  return { deviceId: id, counter, sent: new Date().toISOString(), state: "healthy", ...extra };
}

beforeAll(async () => {
  dir = await makeTempDir("mqtt");
  await initRepo(join(dir, "repo"), "archive");
  server = await startServer(testServerSettings({ repo: join(dir, "repo"), data: join(dir, "data") }), silentLogger());
});
afterAll(async () => {
  for (const client of clients) client.end(true);
  await server?.close();
  await removeTree(dir);
});

describe("device enrollment over MQTT", () => {
  it("refuses an unknown device, lists it as pending, and lets it in once accepted", async () => {
    await expect(connect("dev-a")).rejects.toMatchObject({ code: 5 });
    const pending = await (await api("devices/dev-a")).json();
    expect(pending.device).toMatchObject({ id: "dev-a", enrollment: "pending", publicKey: Buffer.from(keys["dev-a"]!.publicKey).toString("base64") });
    expect((await api("devices/dev-a/accept", "POST")).status).toBe(200);
    const client = await connect("dev-a");
    expect(client.connected).toBe(true);
    await until(async () => (await server.store.getDevice("dev-a"))?.online, "dev-a online");
  });

  it("refuses a token signed by another key for an enrolled id", async () => {
    await expect(connect("dev-a", generateKeyPair())).rejects.toMatchObject({ code: 4 });
  });

  it("answers 404 when accepting a device that never connected", async () => {
    const res = await api("devices/ghost/accept", "POST");
    expect(res.status).toBe(404);
    expect((await res.json()).error.message).toMatch(/must connect once to enroll/);
  });
});

describe("topic ACL", () => {
  it("keeps device A from reading B's commands and from publishing as B", async () => {
    await connect("dev-b").catch(() => undefined);
    await api("devices/dev-b/accept", "POST");
    const b = await connect("dev-b");
    const a = clients.find((c) => c.options.clientId === "dev-a" && c.connected)!;

    // mqtt.js rejects when a grant is refused (128); the SUBACK it carries has the codes.
    const suback = await a
      .subscribeAsync([deviceTopic(P, "dev-b", "cmd"), "apt-ostree/devices/+/cmd", deviceTopic(P, "dev-a", "cmd")])
      .then(() => ({ granted: [] as number[] }), (error: { packet: { granted: number[] } }) => error.packet);
    expect(suback.granted).toEqual([128, 128, 0]);
    await b.subscribeAsync(deviceTopic(P, "dev-b", "cmd"));

    const seenByA: string[] = [];
    const seenByB: string[] = [];
    a.on("message", (topic) => seenByA.push(topic));
    b.on("message", (topic) => seenByB.push(topic));
    await server.broker.publish(deviceTopic(P, "dev-b", "cmd"), "for b");
    await until(() => seenByB.length > 0, "b to get its command");
    expect(seenByA).toEqual([]);

    const aClosed = new Promise<void>((resolve) => a.once("close", () => resolve()));
    a.publish(deviceTopic(P, "dev-b", "state"), signReport(report("dev-b", 1), keys["dev-a"]!), { qos: 1 });
    await aClosed;
    expect((await server.store.getDevice("dev-b"))!.lastCounter).toBeNull();
  });

  it("refuses a CONNECT whose last will would publish anywhere but the device's own online flag", async () => {
    const refused = (will: { topic: string; qos: 0 | 1 | 2 }) =>
      mqtt.connectAsync(`mqtt://127.0.0.1:${server.mqttPort!}`, {
        clientId: "dev-a", username: "dev-a", password: createDeviceToken("dev-a", keys["dev-a"]!, new Date()), reconnectPeriod: 0, protocolVersion: 4,
        will: { ...will, payload: Buffer.from("offline"), retain: true },
      });
    // Another device's flag, a command topic (published by a surviving broker without the ACL's say), QoS 2.
    await expect(refused({ topic: deviceTopic(P, "dev-b", "online"), qos: 1 })).rejects.toMatchObject({ code: 5 });
    await expect(refused({ topic: deviceTopic(P, "dev-a", "cmd"), qos: 1 })).rejects.toMatchObject({ code: 5 });
    await expect(refused({ topic: deviceTopic(P, "dev-a", "online"), qos: 2 })).rejects.toMatchObject({ code: 5 });
    expect((await server.store.getDevice("dev-b"))!.online).toBe(true);
  });
});

describe("device reports", () => {
  it("stores a signed report and refuses a replay and a forgery", async () => {
    const b = clients.find((c) => c.options.clientId === "dev-b" && c.connected)!;
    b.publish(deviceTopic(P, "dev-b", "state"), signReport(report("dev-b", 3, { booted: { commit: "c".repeat(64), version: "2" } }), keys["dev-b"]!), { qos: 1 });
    await until(async () => (await server.store.getDevice("dev-b"))!.lastCounter === 3, "report 3 stored");
    expect((await server.store.getDevice("dev-b"))!.booted).toEqual({ commit: "c".repeat(64), version: "2" });

    // An older counter is a replay; the one stored last, again, a duplicate delivery (another instance's copy).
    await b.publishAsync(deviceTopic(P, "dev-b", "state"), signReport(report("dev-b", 2, { state: "failed" }), keys["dev-b"]!), { qos: 1 });
    await b.publishAsync(deviceTopic(P, "dev-b", "state"), signReport(report("dev-b", 3, { state: "failed" }), keys["dev-b"]!), { qos: 1 });
    await b.publishAsync(deviceTopic(P, "dev-b", "state"), signReport(report("dev-b", 9, { state: "failed" }), generateKeyPair()), { qos: 1 });
    const metrics = await until(async () => {
      const text = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
      return /outcome="bad-signature"/.test(text) ? text : null;
    }, "both rejections counted");
    expect(metrics).toMatch(/aptostree_mqtt_reports_total\{outcome="replay"\} 1/);
    expect(metrics).toMatch(/aptostree_mqtt_reports_total\{outcome="duplicate"\} 1/);
    expect(await server.store.getDevice("dev-b")).toMatchObject({ lastCounter: 3, state: "healthy" });
  });

  it("serves a device that reconnects while its old connection is still open (after a reset)", async () => {
    const deniedPublishes = async () => Number(/aptostree_mqtt_denied_total\{action="publish"\} (\d+)/.exec(await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text())?.[1] ?? 0);
    const deniedBefore = await deniedPublishes();
    const old = clients.find((c) => c.options.clientId === "dev-b" && c.connected)!;
    const closed = new Promise((resolve) => old.once("close", () => resolve(undefined)));
    // The same client id again: the broker closes the old connection and the new one takes over.
    const fresh = await connect("dev-b");
    await closed;
    old.end(true);
    // The flag is written with the next group commit, a moment after the CONNACK.
    await until(async () => (await server.store.getDevice("dev-b"))!.online, "dev-b online on its new connection");
    await fresh.publishAsync(deviceTopic(P, "dev-b", "state"), signReport(report("dev-b", 4, { state: "verifying" }), keys["dev-b"]!), { qos: 1 });
    await until(async () => (await server.store.getDevice("dev-b"))!.lastCounter === 4, "the new connection's report stored");
    expect(await server.store.getDevice("dev-b")).toMatchObject({ online: true, state: "verifying" });
    expect(await deniedPublishes()).toBe(deniedBefore);
  });

  it("marks a device offline when its connection dies", async () => {
    const b = clients.find((c) => c.options.clientId === "dev-b" && c.connected)!;
    (b.stream as unknown as { destroy(): void }).destroy();
    await until(async () => (await server.store.getDevice("dev-b"))!.online === false, "dev-b offline");
    expect((await server.store.deviceEvents("dev-b", 5)).some((e) => e.kind === "offline")).toBe(true);
  });
});

describe("MQTT over WebSocket", () => {
  it("authenticates and serves a device on ws://…/mqtt", async () => {
    const client = await mqtt.connectAsync(`ws://127.0.0.1:${server.mqttWsPort!}/mqtt`, {
      clientId: "dev-a",
      username: "dev-a",
      password: createDeviceToken("dev-a", keys["dev-a"]!, new Date()),
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    clients.push(client);
    const counter = ((await server.store.getDevice("dev-a"))!.lastCounter ?? 0) + 1;
    await client.publishAsync(deviceTopic(P, "dev-a", "state"), signReport(report("dev-a", counter, { state: "idle" }), keys["dev-a"]!), { qos: 1 });
    await until(async () => (await server.store.getDevice("dev-a"))!.lastCounter === counter, "the report over WebSocket");
    await expect(
      mqtt.connectAsync(`ws://127.0.0.1:${server.mqttWsPort!}/mqtt`, { clientId: "dev-a", username: "dev-a", password: "not-a-token", reconnectPeriod: 0, protocolVersion: 4 }),
    ).rejects.toMatchObject({ code: 4 });
  });
});
