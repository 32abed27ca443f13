/**
 * The real `serve` process against a registry flood and a device that floods (issue 18,
 * findings 3 and 4): unknown ids beyond `maxPendingDevices` are refused and leave nothing
 * behind; a device repeating itself or sending beyond its budget causes no writes and no tick
 * storm; its history stays within `historyMaxEventsPerDevice`.
 */
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { signReport } from "../../../shared/wire/report.ts";
import { deviceTopic } from "../../../shared/wire/topics.ts";
import { startServeProcess, type ServeProcess } from "../../helpers/serve-process.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";

const P = "apt-ostree/";
const MAX_PENDING = 5;
const BURST = 30;
const HISTORY = 10;
let dir: string;
let server: ServeProcess;
const clients: MqttClient[] = [];
const keys = new Map<string, ReturnType<typeof generateKeyPair>>();

function connect(id: string): Promise<MqttClient> {
  const key = keys.get(id) ?? generateKeyPair();
  keys.set(id, key);
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${server.mqttPort}`, { clientId: id, username: id, password: createDeviceToken(id, key, new Date()), reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(client);
    client.once("connect", () => resolve(client));
    client.once("error", (error) => {
      client.end(true);
      reject(error);
    });
  });
}

async function acceptedDevice(id: string): Promise<MqttClient> {
  await expect(connect(id)).rejects.toMatchObject({ code: 5 });
  expect((await server.api(`/api/v1/devices/${id}/accept`, { method: "POST" })).status).toBe(200);
  return connect(id);
}

async function events(id: string): Promise<Array<{ kind: string }>> {
  return (await (await server.api(`/api/v1/devices/${id}`)).json()).events;
}

beforeAll(async () => {
  dir = await makeTempDir("hostile-fleet");
  server = await startServeProcess({ dir, limits: { maxPendingDevices: MAX_PENDING, deviceMessageBurst: BURST, historyMaxEventsPerDevice: HISTORY } });
}, 60_000);
afterAll(async () => {
  for (const client of clients) client.end(true);
  await server?.stop();
  await removeTree(dir);
});

describe("a registry flood", () => {
  it(`stores ${MAX_PENDING} unknown devices as pending, then refuses the next with 'server unavailable' and counts it`, async () => {
    for (let i = 0; i < MAX_PENDING; i++) await expect(connect(`flood-${i}`)).rejects.toMatchObject({ code: 5 });
    await expect(connect("flood-extra")).rejects.toMatchObject({ code: 3 });
    expect(await server.metric("aptostree_devices_enrollment_refused_total", { reason: "pending-full" })).toBe(1);
    expect((await server.api("/api/v1/devices/flood-extra")).status).toBe(404);
    expect(await server.metric("aptostree_devices_enrollment", { enrollment: "pending" })).toBe(MAX_PENDING);
    expect(server.log()).toMatch(/"event":"mqtt.connect.refused".*already wait for enrollment/);
    // Deleting one makes room again.
    expect((await server.api("/api/v1/devices/flood-0", { method: "DELETE" })).status).toBe(200);
    await expect(connect("flood-extra")).rejects.toMatchObject({ code: 5 });
    for (const id of ["flood-1", "flood-2", "flood-3", "flood-4", "flood-extra"]) await server.api(`/api/v1/devices/${id}`, { method: "DELETE" });
  });
});

describe("a device that floods", () => {
  it("says 'online' a thousand times: one write, no tick storm, the excess counted", async () => {
    const id = "chatty";
    const client = await acceptedDevice(id);
    await until(async () => (await events(id)).some((e) => e.kind === "online"), "the connection to be recorded");
    const ticksBefore = await server.metric("aptostree_rollout_ticks_total");
    const started = Date.now();
    for (let i = 0; i < 999; i++) client.publish(deviceTopic(P, id, "online"), "online", { qos: 0 });
    await client.publishAsync(deviceTopic(P, id, "online"), "online", { qos: 1 });
    await until(async () => (await server.metric("aptostree_mqtt_rate_limited_total", { kind: "online" })) >= 1000 - BURST, "the flood to be counted");
    const seconds = (Date.now() - started) / 1000;
    expect((await events(id)).filter((e) => e.kind === "online")).toHaveLength(1);
    // The timer ticks once a second; the flood adds none (before: a tick per message).
    expect(await server.metric("aptostree_rollout_ticks_total")).toBeGreaterThan(0);
    expect((await server.metric("aptostree_rollout_ticks_total")) - ticksBefore).toBeLessThanOrEqual(Math.ceil(seconds) + 3);
    expect(server.log().match(/"event":"mqtt.device.rate-limited"/g)).toHaveLength(1);
    expect(server.exited()).toBeNull();
  });

  it("sends a thousand valid reports: its budget's worth is stored, the history kept to its limit", async () => {
    const id = "reporter";
    const client = await acceptedDevice(id);
    const key = keys.get(id)!;
    const sent = new Date().toISOString();
    for (let counter = 1; counter < 1000; counter++) client.publish(deviceTopic(P, id, "state"), signReport({ deviceId: id, counter, sent, state: "idle" }, key), { qos: 0 });
    await client.publishAsync(deviceTopic(P, id, "state"), signReport({ deviceId: id, counter: 1000, sent, state: "downloading" }, key), { qos: 1 });
    await until(async () => (await server.metric("aptostree_mqtt_reports_total", { outcome: "rate-limited" })) >= 1000 - BURST - 5, "the flood to be counted");
    const accepted = await server.metric("aptostree_mqtt_reports_total", { outcome: "accepted" });
    expect(accepted).toBeGreaterThanOrEqual(BURST - 2);
    expect(accepted).toBeLessThan(BURST + 10);
    expect(await events(id)).toHaveLength(HISTORY);
  });

  it("reconnects in a loop: refused once over its budget, and the server stays up", async () => {
    const id = "flapper";
    await acceptedDevice(id);
    let refusedWith: number | undefined;
    for (let i = 0; i < BURST + 5 && refusedWith === undefined; i++) {
      const client = await connect(id).catch((error: { code?: number }) => ((refusedWith = error.code), null));
      client?.end(true);
    }
    expect(refusedWith).toBe(3);
    expect(await server.metric("aptostree_mqtt_rate_limited_total", { kind: "connect" })).toBeGreaterThan(0);
    expect((await fetch(`http://127.0.0.1:${server.httpPort}/healthz`)).status).toBe(200);
  });
});
