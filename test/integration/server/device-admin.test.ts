/**
 * Rejecting and deleting devices (issue 18, finding 3), through the API and the CLI, against
 * the real server with devices over real MQTT: a rejected device cannot connect (its open
 * connection is ended); a deleted one disappears from lists, metrics, history and its retained
 * topics, and comes back only as a new pending device.
 */
import { join } from "node:path";
import { execa } from "execa";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { generateKeyPair, type Ed25519KeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { deviceTopic } from "../../../shared/wire/topics.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { TEST_ADMIN_TOKEN, testServerSettings } from "../../helpers/server-settings.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";

const P = "apt-ostree/";
const keys = new Map<string, Ed25519KeyPair>();
const clients: MqttClient[] = [];
let dir: string;
let server: RunningServer;

const base = () => `http://127.0.0.1:${server.httpPort}`;
const api = (path: string, method = "GET") => fetch(`${base()}/api/v1/${path}`, { method, headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });
const cli = (...args: string[]) => execa(process.execPath, [SERVER_CLI, "device", ...args, "--server", base()], { env: { APT_OSTREE_ADMIN_TOKEN: TEST_ADMIN_TOKEN }, reject: false });

/** Connects as a device; resolves with the client, or rejects with the CONNACK refusal. */
function connect(id: string, key = keys.get(id) ?? generateKeyPair()): Promise<MqttClient> {
  keys.set(id, keys.get(id) ?? key);
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${server.mqttPort!}`, {
      clientId: id, username: id, password: createDeviceToken(id, key, new Date()), reconnectPeriod: 0, protocolVersion: 4,
      will: { topic: deviceTopic(P, id, "online"), payload: Buffer.from("offline"), qos: 1, retain: true },
    });
    clients.push(client);
    client.once("connect", () => resolve(client));
    client.once("error", (error) => {
      client.end(true);
      reject(error);
    });
  });
}

async function enrolled(id: string): Promise<MqttClient> {
  await expect(connect(id)).rejects.toMatchObject({ code: 5 });
  expect((await api(`devices/${id}/accept`, "POST")).status).toBe(200);
  const client = await connect(id);
  await client.publishAsync(deviceTopic(P, id, "online"), "online", { qos: 1, retain: true });
  await until(async () => (await server.store.getDevice(id))?.online, `${id} online`);
  return client;
}

function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => (client.connected ? client.once("close", () => resolve()) : resolve()));
}

async function metric(line: RegExp): Promise<string | undefined> {
  return (await (await fetch(`${base()}/metrics`)).text()).split("\n").find((l) => line.test(l));
}

beforeAll(async () => {
  dir = await makeTempDir("device-admin");
  await initRepo(join(dir, "repo"), "archive");
  server = await startServer(testServerSettings({ repo: join(dir, "repo"), data: join(dir, "data") }), silentLogger());
});
afterAll(async () => {
  for (const client of clients) client.end(true);
  await server?.close();
  await removeTree(dir);
});

describe("rejecting a device", () => {
  it("keeps a rejected pending device out, whichever key it presents", async () => {
    await expect(connect("stranger")).rejects.toMatchObject({ code: 5 });
    const rejected = await cli("reject", "stranger");
    expect(rejected.stdout).toBe("Rejected stranger");
    await expect(connect("stranger")).rejects.toMatchObject({ code: 5 });
    await expect(connect("stranger", generateKeyPair())).rejects.toMatchObject({ code: 4 });
    const { device, events } = await (await api("devices/stranger")).json();
    expect(device).toMatchObject({ enrollment: "rejected", online: false });
    expect(events[0].kind).toBe("rejected");
    expect(await metric(/^aptostree_devices_enrollment\{enrollment="rejected"\}/)).toBe('aptostree_devices_enrollment{enrollment="rejected"} 1');
  });

  it("ends the connection of an accepted device rejected through the API, and refuses its return", async () => {
    const client = await enrolled("turncoat");
    const gone = closed(client);
    const res = await api("devices/turncoat/reject", "POST");
    expect(res.status).toBe(200);
    expect((await res.json()).device).toMatchObject({ id: "turncoat", enrollment: "rejected", online: false });
    await gone;
    await expect(connect("turncoat")).rejects.toMatchObject({ code: 5 });
    expect((await server.store.getDevice("turncoat"))!.online).toBe(false);
  });

  it("answers 404 for a device it does not know", async () => {
    expect((await api("devices/ghost/reject", "POST")).status).toBe(404);
    const result = await cli("reject", "ghost");
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/server answered 404: no device 'ghost'/);
  });
});

describe("deleting a device", () => {
  it("removes it from lists, metrics and history, ends its connection and clears its retained topics", async () => {
    const client = await enrolled("retired");
    await server.broker.publish(deviceTopic(P, "retired", "cmd"), "an old command", true);
    const gone = closed(client);
    const deleted = await cli("delete", "retired");
    expect(deleted.stdout).toBe("Deleted retired");
    await gone;
    expect((await api("devices/retired")).status).toBe(404);
    expect((await (await api("devices")).json()).devices.map((d: { id: string }) => d.id)).not.toContain("retired");
    expect((await cli("list")).stdout).not.toMatch(/retired/);
    expect(await metric(/^aptostree_devices_enrollment\{enrollment="accepted"\}/)).toBe('aptostree_devices_enrollment{enrollment="accepted"} 0');

    // It may come back, as a stranger: pending, with no history, and no retained command waits for it.
    await expect(connect("retired")).rejects.toMatchObject({ code: 5 });
    const { device, events } = await (await api("devices/retired")).json();
    expect(device).toMatchObject({ enrollment: "pending", lastCounter: null });
    expect(events.map((e: { kind: string }) => e.kind)).toEqual(["enrolled"]);
    await api("devices/retired/accept", "POST");
    const again = await connect("retired");
    const received: string[] = [];
    again.on("message", (_topic, payload) => received.push(payload.toString()));
    await again.subscribeAsync(deviceTopic(P, "retired", "cmd"), { qos: 1 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(received).toEqual([]);
  });

  it("deletes a pending device from the API, and its count goes back to zero", async () => {
    await expect(connect("passer-by")).rejects.toMatchObject({ code: 5 });
    expect(await metric(/^aptostree_devices_enrollment\{enrollment="pending"\}/)).toBe('aptostree_devices_enrollment{enrollment="pending"} 1');
    const res = await api("devices/passer-by", "DELETE");
    expect(res.status).toBe(200);
    expect((await res.json()).device.id).toBe("passer-by");
    expect(await metric(/^aptostree_devices_enrollment\{enrollment="pending"\}/)).toBe('aptostree_devices_enrollment{enrollment="pending"} 0');
    expect((await api("devices/passer-by", "DELETE")).status).toBe(404);
  });
});
