/**
 * Two `serve` processes on one PostgreSQL, their embedded brokers joined by a real Redis
 * (`--broker-redis`, issue 21): 50 devices spread over both, a three-wave rollout created on
 * one instance reaching devices connected to the other, the leader killed with -9 mid-rollout
 * and restarted while its devices move to the survivor; no device gets a second, different
 * command, devices that moved stay online, and a device that went down with its instance is
 * marked offline by the survivor. Retained commands live in Redis: they survive every instance.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import mqtt from "mqtt";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { TEST_ENROLLMENT_SECRET } from "../../helpers/enrollment-secret.ts";
import { startPostgres, type RunningPostgres } from "../../helpers/postgres.ts";
import { startRedis, type RunningRedis } from "../../helpers/redis.ts";
import { startServeProcess, type ServeProcess, type ServeProcessOptions } from "../../helpers/serve-process.ts";
import { SimulatedDevice } from "../../helpers/simulated-device.ts";
import { initServerRepo, publishSyntheticVersion } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";

const REF = "test/bookworm/test-machine/test-image";
const FLEET = 50;
const key = generateKeyPair();
let dir = "";
let postgres: RunningPostgres;
let redis: RunningRedis;
const options: ServeProcessOptions[] = [];
const instances: ServeProcess[] = [];
const devices = Array.from({ length: FLEET }, (_, i) => new SimulatedDevice(`redis-${String(i).padStart(2, "0")}`, key.publicKey, ["lab"], { enrollmentSecret: TEST_ENROLLMENT_SECRET }));
/** Not in the rollout: it goes down with its instance and never comes back. */
const bystander = new SimulatedDevice("redis-bystander", key.publicKey, ["lab"], { enrollmentSecret: TEST_ENROLLMENT_SECRET });
let bystanderAgain: mqtt.MqttClient | null = null;
/** Which instance each device is connected to. */
const home = new Map<SimulatedDevice, number>();

const json = async (instance: ServeProcess, path: string, body?: unknown) => {
  const response = await instance.api(`/api/v1/${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  return { status: response.status, body: (await response.json()) as any };
};
const alive = () => instances.filter((instance) => instance.exited() === null);
const devicesOn = async (instance: ServeProcess) => new Map<string, any>((await json(instance, "devices")).body.devices.map((d: any) => [d.id, d]));

beforeAll(async () => {
  dir = await makeTempDir("broker-redis");
  postgres = await startPostgres("broker-redis");
  redis = await startRedis("broker-redis");
  const db = await postgres.createDatabase("fleet");
  const repo = await initServerRepo(dir, key);
  await publishSyntheticVersion(repo, REF, dir, key, 1);
  for (const name of ["one", "two"]) {
    await mkdir(join(dir, name));
    options.push({ dir: join(dir, name), repo, signingKey: join(dir, "server.secret"), db, brokerRedis: redis.url, autoAccept: true });
    instances.push(await startServeProcess(options.at(-1)!));
  }
}, 120_000);

afterAll(async () => {
  const within = (ms: number, work: Promise<unknown>) => Promise.race([work.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, ms))]);
  await within(10_000, Promise.all([...devices, bystander].map((device) => device.disconnect())));
  await within(5000, bystanderAgain?.endAsync(true) ?? Promise.resolve());
  for (const instance of instances) await instance.stop();
  await redis?.stop();
  await postgres?.remove();
  await removeTree(dir);
}, 60_000);

describe("two instances whose embedded brokers are joined by Redis", () => {
  it("take devices on either broker into one fleet", async () => {
    for (const [i, device] of devices.entries()) {
      await device.connect(instances[i % 2]!.mqttPort);
      home.set(device, i % 2);
    }
    for (const instance of instances) {
      await until(async () => [...(await devicesOn(instance)).values()].filter((d) => d.enrollment === "accepted" && d.online && d.state === "idle").length === FLEET, "every device accepted, online and idle, seen from each instance", 60_000);
    }
  }, 90_000);

  it("run a three-wave rollout across both brokers through the leader's death (-9) and restart, one command per device", async () => {
    await publishSyntheticVersion(join(dir, "repo"), REF, dir, key, 2);
    const flags = await Promise.all(instances.map((instance) => instance.metric("aptostree_rollout_leader")));
    await until(async () => (await Promise.all(instances.map((instance) => instance.metric("aptostree_rollout_leader")))).reduce((a, b) => a + b, 0) === 1, "one lease holder", 30_000);
    const leaderIndex = (await Promise.all(instances.map((instance) => instance.metric("aptostree_rollout_leader")))).indexOf(1);
    expect(flags.length).toBe(2);
    const follower = instances[1 - leaderIndex]!;
    await bystander.connect(instances[leaderIndex]!.mqttPort);
    home.set(bystander, leaderIndex);
    await until(async () => (await devicesOn(follower)).get(bystander.id)?.online === true, "the bystander online", 15_000);
    // It reconnects to the same instance over a half-open connection: the replaced connection's
    // close deletes the stored will, which the broker stores again, or its death would go unseen.
    bystanderAgain = await mqtt.connectAsync(`mqtt://127.0.0.1:${instances[leaderIndex]!.mqttPort}`, {
      clientId: bystander.id, username: bystander.id, password: createDeviceToken(bystander.id, bystander.key, new Date(), undefined, TEST_ENROLLMENT_SECRET), reconnectPeriod: 0, protocolVersion: 4,
      will: { topic: `apt-ostree/devices/${bystander.id}/online`, payload: Buffer.from("offline"), qos: 1, retain: true },
    });
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect((await devicesOn(follower)).get(bystander.id)?.online).toBe(true);
    for (const device of devices) device.updateDelayMs = 1500;
    const created = await json(follower, "rollouts", { ref: REF, select: { devices: devices.map((d) => d.id) }, waves: "10%,50%,100%", waveDelay: "0s", waveTimeout: "5m" });
    expect(created.status).toBe(201);
    const rollout = created.body.rollout.id as string;

    // The leader sends every command: those to the follower's devices cross Redis.
    await until(() => devices.filter((d) => d.commandsReceived.length > 0).length > FLEET * 0.1, "the second wave's first commands", 60_000);
    expect(devices.filter((d) => home.get(d) !== leaderIndex).some((d) => d.commandsReceived.length > 0)).toBe(true);

    instances[leaderIndex]!.child.kill("SIGKILL");
    // Restarted at once; its devices (the bystander apart) come back to it. The dead broker's
    // last wills are then published by the survivor, which must not take them for these devices.
    instances[leaderIndex] = await startServeProcess(options[leaderIndex]!);
    for (const device of devices.filter((d) => home.get(d) === leaderIndex)) {
      await device.disconnect().catch(() => undefined);
      await device.connect(instances[leaderIndex]!.mqttPort);
    }
    await until(async () => (await Promise.all(instances.map((instance) => instance.metric("aptostree_rollout_leader")))).reduce((a, b) => a + b, 0) === 1, "one of them to take the lease", 30_000);

    await until(async () => ((await json(follower, `rollouts/${rollout}`)).body.rollout.progress.state === "completed" ? true : null), "the rollout to complete", 120_000, {
      detail: async () => JSON.stringify((await json(follower, `rollouts/${rollout}`)).body.rollout.progress),
    });
    const done = (await json(instances[leaderIndex]!, `rollouts/${rollout}`)).body.rollout;
    expect(done.devices.filter((m: any) => m.status === "healthy").length).toBe(FLEET);
    for (const device of devices) {
      expect(device.distinctCommands()).toEqual([rollout]);
      expect(device.booted.version).toBe("2");
      expect(device.errors.filter((e) => !/closed|disconnect|client/i.test(e))).toEqual([]);
    }
    const replays = await Promise.all(alive().map((instance) => instance.metric("aptostree_mqtt_reports_total", { outcome: "replay" })));
    expect(replays).toEqual([0, 0]);
  }, 240_000);

  it("keep devices that came back online, and mark offline the one that went down with its instance", async () => {
    const survivor = instances.find((instance, i) => home.get(bystander) !== i)!;
    await until(async () => (await devicesOn(survivor)).get(bystander.id)?.online === false, "the dead instance's device marked offline by its last will", 90_000);
    // Every will of the dead broker was handled by now (the bystander's with them).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const fleet = await devicesOn(survivor);
    expect(devices.filter((d) => fleet.get(d.id)?.online !== true).map((d) => d.id)).toEqual([]);
    // Every live instance publishes a dead broker's wills: either may have taken the bystander's.
    const logs = alive().map((instance) => instance.log()).join("\n");
    expect(logs).toMatch(/"event":"mqtt.will.dead-broker","deviceId":"redis-bystander"/);
    expect(logs).not.toMatch(/"event":"mqtt.will.dead-broker","deviceId":"redis-\d+"/);
  }, 120_000);

  it("take a device's connection over from the other broker without marking it offline", async () => {
    const device = devices[0]!;
    const before = home.get(device)!;
    const other = instances[1 - before]!;
    // A second connection under the same id, on the other broker, while the first is still open.
    const token = createDeviceToken(device.id, device.key, new Date(), undefined, TEST_ENROLLMENT_SECRET);
    const since = new Date().toISOString();
    const twin = await mqtt.connectAsync(`mqtt://127.0.0.1:${other.mqttPort}`, { clientId: device.id, username: device.id, password: token, reconnectPeriod: 0, protocolVersion: 4 });
    await new Promise((resolve) => setTimeout(resolve, 2000));
    for (const instance of alive()) expect((await devicesOn(instance)).get(device.id)?.online).toBe(true);
    // The closed connection said nothing: no offline, not even for a moment.
    const events = (await json(other, `devices/${device.id}`)).body.events as Array<{ at: string; kind: string }>;
    expect(events.filter((e) => e.at >= since && e.kind === "offline")).toEqual([]);
    await twin.endAsync();
    await device.disconnect().catch(() => undefined);
  }, 60_000);

  it("keep retained commands in Redis: after every instance restarted, a device reconnecting gets its command again", async () => {
    const device = devices[1]!;
    await device.disconnect().catch(() => undefined);
    const heard = device.commandsReceived.length;
    for (const instance of instances) await instance.stop();
    instances[0] = await startServeProcess(options[0]!);
    await device.connect(instances[0].mqttPort);
    await until(() => device.commandsReceived.length > heard, "the retained command, from Redis", 15_000);
    expect(device.distinctCommands()).toHaveLength(1);
  }, 90_000);

  it("outlive Redis going away for half a minute (a will sweep, devices leaving and arriving), and work again once it is back", async () => {
    const instance = instances[0]!;
    const leaving = devices[3]!;
    await leaving.disconnect().catch(() => undefined);
    await leaving.connect(instance.mqttPort);
    await redis.stop({ keep: true });
    await leaving.disconnect().catch(() => undefined);
    const arriving = devices[2]!;
    await Promise.race([arriving.connect(instance.mqttPort).catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 5000))]);
    // Past a will sweep (every 20 s) and the commands' retries.
    await new Promise((resolve) => setTimeout(resolve, 25_000));
    expect(instance.exited()).toBeNull();
    expect((await instance.fetch(`${instance.baseUrl}/healthz`)).ok).toBe(true);
    expect((await json(instance, "devices")).body.devices.length).toBe(FLEET + 1);

    await redis.start();
    await arriving.disconnect().catch(() => undefined);
    const heard = arriving.commandsReceived.length;
    await until(async () => {
      await arriving.disconnect().catch(() => undefined);
      await arriving.connect(instance.mqttPort);
      return (await devicesOn(instance)).get(arriving.id)?.online === true;
    }, "a device to connect once Redis is back", 30_000, { intervalMs: 1000 });
    expect(instance.exited()).toBeNull();
    expect(arriving.commandsReceived.length).toBeGreaterThanOrEqual(heard);
  }, 120_000);
});
