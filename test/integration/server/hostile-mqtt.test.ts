/**
 * The real `serve` process under hostile MQTT: messages that once ended it (numbers canonical
 * JSON cannot hold, deep nesting, as reports and as last wills) and connections that made it
 * hold memory before authentication. After each attack the process is alive, answers, counts the
 * refusal, and stores nothing the attacker sent.
 */
import { connect as connectTcp, type Socket } from "node:net";
import mqtt, { type MqttClient } from "mqtt";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { signReport } from "../../../shared/wire/report.ts";
import { deviceTopic } from "../../../shared/wire/topics.ts";
import { startServeProcess, type ServeProcess } from "../../helpers/serve-process.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";
import { TEST_ENROLLMENT_SECRET } from "../../helpers/enrollment-secret.ts";

const P = "apt-ostree/";
const CONNECT_TIMEOUT_SECONDS = 2;
const UNAUTHENTICATED_PER_ADDRESS = 8;
let dir: string;
let server: ServeProcess;
const clients: MqttClient[] = [];
const sockets: Socket[] = [];

function device(id: string, will?: { topic: string; payload: Buffer }): Promise<MqttClient> {
  const key = keys.get(id) ?? generateKeyPair();
  keys.set(id, key);
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${server.mqttPort}`, {
      clientId: id, username: id, password: createDeviceToken(id, key, new Date(), undefined, TEST_ENROLLMENT_SECRET), reconnectPeriod: 0, protocolVersion: 4,
      ...(will ? { will: { ...will, qos: 0, retain: false } } : {}),
    });
    clients.push(client);
    client.once("connect", () => resolve(client));
    client.once("error", reject);
  });
}
const keys = new Map<string, ReturnType<typeof generateKeyPair>>();

async function expectServerUnharmed(): Promise<void> {
  expect(server.exited()).toBeNull();
  expect((await fetch(`http://127.0.0.1:${server.httpPort}/healthz`)).status).toBe(200);
}

async function deviceRecord(id: string): Promise<any> {
  return (await (await server.api(`/api/v1/devices/${id}`)).json()).device;
}

/** Opens a raw TCP connection to the broker; resolves once connected. */
function rawConnection(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectTcp(server.mqttPort, "127.0.0.1", () => resolve(socket));
    socket.on("error", () => undefined);
    socket.once("error", reject);
    sockets.push(socket);
  });
}

function closed(socket: Socket, ms: number): Promise<boolean> {
  if (socket.destroyed || socket.readableEnded) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

beforeAll(async () => {
  dir = await makeTempDir("hostile-mqtt");
  server = await startServeProcess({
    dir,
    autoAccept: true,
    limits: { mqttConnectTimeoutSeconds: CONNECT_TIMEOUT_SECONDS, mqttMaxUnauthenticatedPerAddress: UNAUTHENTICATED_PER_ADDRESS },
  });
}, 60_000);
afterAll(async () => {
  for (const client of clients) client.end(true);
  for (const socket of sockets) socket.destroy();
  await server?.stop();
  await removeTree(dir);
});

describe("reports that cannot be put in canonical form", () => {
  const deep = (levels: number) => `${"[".repeat(levels)}${"]".repeat(levels)}`;
  const cases: [string, string][] = [
    ["a number out of range", '{"report":{"deviceId":"x","counter":1e999},"sig":"AAAA"}'],
    ["nesting thousands of levels deep", `{"report":{"deviceId":"x","health":${deep(5000)}},"sig":"AAAA"}`],
    ["a negative number out of range", '{"report":{"counter":-1e400},"sig":"AAAA"}'],
  ];

  it.each(cases)("refuses a report holding %s, counts it and stays up", async (_name, payload) => {
    const id = `crash-${Math.random().toString(36).slice(2, 8)}`;
    const client = await device(id);
    const before = await server.metric("aptostree_mqtt_reports_total", { outcome: "malformed" });
    await client.publishAsync(deviceTopic(P, id, "state"), payload, { qos: 1 });
    await until(async () => (await server.metric("aptostree_mqtt_reports_total", { outcome: "malformed" })) > before, "the malformed report to be counted", 10_000, { detail: () => `exited ${server.exited()}` });
    await expectServerUnharmed();
    expect((await deviceRecord(id)).state).toBeNull();
    expect(server.log()).toMatch(/"event":"mqtt.report.rejected"/);
  });

  it("refuses the same as a last will at CONNECT (a will may only set the device's online flag), and still takes a valid report afterwards", async () => {
    const id = "will-crash";
    const will = { topic: deviceTopic(P, id, "state"), payload: Buffer.from('{"report":{"counter":1e999},"sig":"AAAA"}') };
    await expect(device(id, will)).rejects.toMatchObject({ code: 5 });
    await expectServerUnharmed();
    expect(server.log()).toMatch(/a last will may only set the device's own online flag/);

    const again = await device(id);
    await again.publishAsync(deviceTopic(P, id, "state"), signReport({ deviceId: id, counter: 1, sent: new Date().toISOString(), state: "idle" }, keys.get(id)!), { qos: 1 });
    await until(async () => (await deviceRecord(id)).state === "idle", "the valid report to be stored");
  });

  it("refuses a hello whose token is 60,000 characters long", async () => {
    const id = "hello-crash";
    const client = await device(id);
    await client.publishAsync(deviceTopic(P, id, "hello"), "x".repeat(60_000), { qos: 1 });
    await until(async () => (await server.metric("aptostree_mqtt_hellos_total", { outcome: "rejected" })) > 0, "the hello to be refused");
    await expectServerUnharmed();
  });
});

describe("memory before authentication", () => {
  it("cuts a connection whose CONNECT declares 64 MiB, before holding it", async () => {
    const socket = await rawConnection();
    const rssBefore = await server.rss();
    // CONNECT (0x10) with a Remaining Length of 64 MiB: 0x80 0x80 0x80 0x20.
    socket.write(Buffer.from([0x10, 0x80, 0x80, 0x80, 0x20]));
    let written = 0;
    const chunk = Buffer.alloc(64 * 1024);
    const isClosed = closed(socket, 10_000);
    while (!socket.destroyed && written < 32 * 1024 * 1024) {
      if (!socket.write(chunk)) await Promise.race([new Promise((resolve) => socket.once("drain", resolve)), isClosed]);
      written += chunk.length;
    }
    expect(await isClosed).toBe(true);
    expect(written).toBeLessThan(32 * 1024 * 1024);
    expect(await server.metric("aptostree_mqtt_dropped_total", { reason: "packet-too-large" })).toBeGreaterThan(0);
    expect((await server.rss()) - rssBefore).toBeLessThan(16 * 1024 * 1024);
    await expectServerUnharmed();
  });

  it("closes a connection that sends no CONNECT within the configured time", async () => {
    const socket = await rawConnection();
    socket.write(Buffer.from([0x10])); // a first byte, and then nothing
    expect(await closed(socket, (CONNECT_TIMEOUT_SECONDS + 4) * 1000)).toBe(true);
  });

  it("caps connections per address that have not authenticated, and frees the slots when they close", async () => {
    const held = await Promise.all(Array.from({ length: UNAUTHENTICATED_PER_ADDRESS }, () => rawConnection()));
    const before = await server.metric("aptostree_mqtt_dropped_total", { reason: "too-many-unauthenticated-from-address" });
    const extra = await rawConnection();
    expect(await closed(extra, 1000)).toBe(true);
    expect(await server.metric("aptostree_mqtt_dropped_total", { reason: "too-many-unauthenticated-from-address" })).toBe(before + 1);
    for (const socket of held) socket.destroy();
    await until(async () => {
      const client = await device("after-the-flood").catch(() => null);
      return client?.connected;
    }, "a device to connect once the idle connections closed");
  });

  it("cuts an authenticated device that publishes a packet above the limit", async () => {
    const client = await device("big-publisher");
    const before = await server.metric("aptostree_mqtt_dropped_total", { reason: "packet-too-large" });
    const gone = new Promise<void>((resolve) => client.once("close", () => resolve()));
    client.publish(deviceTopic(P, "big-publisher", "state"), Buffer.alloc(100 * 1024, 0x20));
    await gone;
    expect(await server.metric("aptostree_mqtt_dropped_total", { reason: "packet-too-large" })).toBe(before + 1);
    await expectServerUnharmed();
  });

  it("cuts a device that publishes at QoS 2, which the broker would hold until a PUBREL that never comes", async () => {
    const client = await device("qos2-hoarder");
    const gone = new Promise<void>((resolve) => client.once("close", () => resolve()));
    const before = await server.metric("aptostree_mqtt_denied_total", { action: "publish-qos2" });
    client.publish(deviceTopic(P, "qos2-hoarder", "state"), Buffer.alloc(1000), { qos: 2 });
    await gone;
    expect(await server.metric("aptostree_mqtt_denied_total", { action: "publish-qos2" })).toBe(before + 1);
    await expectServerUnharmed();
  });

  it("charges each topic filter of a SUBSCRIBE to the device's budget, so thousands cost little and log once", async () => {
    const client = await device("subscribe-flood");
    const logBefore = server.log().length;
    const topics = Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`${P}devices/o-${i}/cmd`, { qos: 1 as const }]));
    // Every filter is refused (128), which mqtt.js reports as a failed subscription.
    await expect(client.subscribeAsync(topics)).rejects.toThrow(/Subscribe error/);
    expect(await server.metric("aptostree_mqtt_rate_limited_total", { kind: "subscribe" })).toBeGreaterThan(1000);
    const lines = server.log().slice(logBefore).split("\n").filter((line) => line.includes("subscribe-flood"));
    expect(lines.length).toBeLessThan(200);
    await expectServerUnharmed();
  });

  it("closes a WebSocket that sends a message above the packet limit", async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${server.mqttWsPort}/mqtt`, "mqtt");
    await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
    const code = new Promise<number>((resolve) => socket.once("close", (c) => resolve(c)));
    socket.send(Buffer.alloc(1024 * 1024));
    expect(await code).toBe(1009);
    await expectServerUnharmed();
  });
});
