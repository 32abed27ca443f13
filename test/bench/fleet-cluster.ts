/**
 * `npm run bench -- fleet-cluster` (issue 21): the same farm of simulated devices against
 *   - one `serve` process, SQLite and its embedded broker (the default), and
 *   - two `serve` processes on one PostgreSQL, their embedded brokers joined by Redis
 *     (`--db`, `--broker-redis`), the devices spread over both,
 *   - the same again with the rollout lease holder killed with -9 mid-wave, its devices moving
 *     to the survivor (a load balancer's failover).
 * Each run reports the enrollment storm (farm start to every device accepted and idle), `POST
 * /api/v1/rollouts`'s answer time, the time from that POST to each device's first command (one
 * 100% wave: p50, p99, max), memory per device per server process, and for the kill: the time
 * until the survivor holds the lease, devices that got a second, different command (must be 0)
 * and identical repeats (the new leader re-publishes what the dead one may have lost).
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import mqtt, { type MqttClient } from "mqtt";
import { DEFAULT_TOPIC_PREFIX, deviceTopic } from "../../shared/wire/topics.ts";
import { freePort } from "../helpers/mosquitto.ts";
import { procUsage } from "./proc-usage.ts";
import { mkdir } from "node:fs/promises";
import { generateKeyPair } from "../../shared/sign/ed25519.ts";
import { TEST_ENROLLMENT_SECRET } from "../helpers/enrollment-secret.ts";
import { startPostgres, type RunningPostgres } from "../helpers/postgres.ts";
import { startRedis, type RunningRedis } from "../helpers/redis.ts";
import { startServeProcess, type ServeProcess } from "../helpers/serve-process.ts";
import { initServerRepo, publishSyntheticVersion } from "../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";
import { startFarm, type DeviceFarm } from "./device-farm.ts";
import { assignGroup } from "./assign-group.ts";
import { percentile } from "./stats.ts";

const REF = "bench/bookworm/bench-machine/bench-image";
const GROUP = "bench";

export type ClusterSetup = "floor: bare aedes, no server" | "one process (SQLite, embedded broker)" | "2 instances (PostgreSQL, brokers joined by Redis)" | "2 instances, leader killed -9 mid-wave";

export interface ClusterRun {
  setup: ClusterSetup;
  devices: number;
  enrollSeconds: number;
  /** Per server process: resident memory added per device it holds. */
  bytesPerDevice: number[];
  createMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** kill -9 of the lease holder to the survivor holding it; null without a kill. */
  takeoverSeconds: number | null;
  /** Devices that got a command with a second id: must be 0. */
  secondCommands: number;
  /** Identical command messages beyond each device's first. */
  repeats: number;
  reconnects: number;
}

const json = async (instance: ServeProcess, path: string, body?: unknown) => {
  const response = await instance.api(`/api/v1/${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  const parsed = (await response.json()) as any;
  if (response.status >= 300) throw new Error(`${path}: HTTP ${response.status}: ${JSON.stringify(parsed)}`);
  return parsed;
};

export async function benchFleetCluster(setup: ClusterSetup, devices: number, log: (line: string) => void): Promise<ClusterRun> {
  if (setup === "floor: bare aedes, no server") return benchFloor(devices, log);
  const dir = await makeTempDir(`bench-cluster-${devices}`);
  const clustered = setup !== "one process (SQLite, embedded broker)";
  let postgres: RunningPostgres | null = null;
  let redis: RunningRedis | null = null;
  const instances: ServeProcess[] = [];
  let farm: DeviceFarm | null = null;
  try {
    const key = generateKeyPair();
    const repo = await initServerRepo(dir, key);
    await publishSyntheticVersion(repo, REF, dir, key, 1);
    const shared = clustered ? { db: await (postgres = await startPostgres("bench-cluster")).createDatabase("fleet"), brokerRedis: (redis = await startRedis("bench-cluster")).url } : {};
    for (const name of clustered ? ["one", "two"] : ["one"]) {
      await mkdir(join(dir, name));
      instances.push(await startServeProcess({ dir: join(dir, name), repo, signingKey: join(dir, "server.secret"), autoAccept: true, ...shared }));
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const idle = await Promise.all(instances.map((instance) => instance.rss()));

    const enrollStarted = process.hrtime.bigint();
    farm = await startFarm(
      { count: devices, port: instances.map((instance) => instance.mqttPort), enrollmentSecret: TEST_ENROLLMENT_SECRET, failover: setup === "2 instances, leader killed -9 mid-wave", external: false, group: GROUP, concurrency: 64, idPrefix: `c${devices}` },
      (n) => log(`  ${n}/${devices} connected`),
    );
    await until(async () => ((await json(instances[0]!, "fleet")).byState?.idle ?? 0) >= devices, `${devices} devices enrolled and idle`, 900_000, { intervalMs: 500 });
    const enrollSeconds = Number(process.hrtime.bigint() - enrollStarted) / 1e9;
    log(`  enrolled in ${enrollSeconds.toFixed(1)} s`);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const loaded = await Promise.all(instances.map((instance) => instance.rss()));

    await assignGroup(async (path, body) => ({ status: (await instances[0]!.api(`/api/v1/${path}`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } })).status }), farm.ids, GROUP);
    const leaderIndex = clustered ? (await Promise.all(instances.map((instance) => instance.metric("aptostree_rollout_leader")))).indexOf(1) : 0;
    // Created on the instance that does not hold the lease, when there is one.
    const front = instances[clustered ? 1 - leaderIndex : 0]!;
    const created = process.hrtime.bigint();
    await json(front, "rollouts", { ref: REF, select: { groups: [GROUP] }, waves: "100%", waveDelay: "0s", waveTimeout: "30m" });
    const createMs = Number(process.hrtime.bigint() - created) / 1e6;

    let takeoverSeconds: number | null = null;
    if (setup === "2 instances, leader killed -9 mid-wave") {
      await until(() => farm!.firstCommandAt.size >= devices * 0.3, "30% of the wave's commands", 600_000, { intervalMs: 5 });
      const killedAt = process.hrtime.bigint();
      instances[leaderIndex]!.child.kill("SIGKILL");
      log(`  killed the lease holder with ${farm.firstCommandAt.size}/${devices} commands out`);
      await until(async () => (await front.metric("aptostree_rollout_leader")) === 1, "the survivor to take the lease", 120_000, { intervalMs: 100 });
      takeoverSeconds = Number(process.hrtime.bigint() - killedAt) / 1e9;
    }
    await until(() => farm!.firstCommandAt.size >= devices, `all ${devices} devices to receive their command`, 900_000, { intervalMs: 20 });
    const latencies = [...farm.firstCommandAt.values()].map((at) => Number(at - created) / 1e6).sort((a, b) => a - b);
    // Late repeats (a re-publish after the takeover) have a moment to arrive before counting.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const received = [...farm.commandIds.values()];
    return {
      setup,
      devices,
      enrollSeconds,
      bytesPerDevice: loaded.map((rss, i) => (rss - idle[i]!) / (devices / instances.length)),
      createMs,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      maxMs: latencies.at(-1)!,
      takeoverSeconds,
      secondCommands: received.filter((ids) => new Set(ids).size > 1).length,
      repeats: received.reduce((sum, ids) => sum + ids.length - 1, 0),
      reconnects: farm.reconnects(),
    };
  } finally {
    for (const [i, instance] of instances.entries()) {
      const exit = instance.exited();
      if (exit !== null && exit !== "SIGKILL") log(`  instance ${i} ended (${exit}): ${instance.log().slice(-3000)}`);
    }
    await farm?.close().catch(() => undefined);
    for (const instance of instances) await instance.stop();
    await redis?.stop();
    await postgres?.remove();
    await removeTree(dir);
  }
}

/**
 * What the farm and the broker cost by themselves on these cores: the same farm against aedes
 * with no hooks and no store (every device connects, subscribes and publishes its report), then
 * one MQTT client publishing each device's retained command, timed to each device's receipt.
 */
async function benchFloor(devices: number, log: (line: string) => void): Promise<ClusterRun> {
  const port = await freePort();
  const broker = spawn(process.execPath, [fileURLToPath(new URL("./bare-aedes.cjs", import.meta.url)), String(port)], { stdio: ["ignore", "pipe", "inherit"] });
  let farm: DeviceFarm | null = null;
  let publisher: MqttClient | null = null;
  try {
    await new Promise<void>((resolve, reject) => {
      broker.stdout!.once("data", () => resolve());
      broker.once("exit", (code) => reject(new Error(`bare aedes exited with ${code}`)));
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const idle = (await procUsage(broker.pid!)).rss;
    const started = process.hrtime.bigint();
    farm = await startFarm({ count: devices, port, external: false, group: GROUP, concurrency: 64, idPrefix: `f${devices}` }, (n) => log(`  ${n}/${devices} connected`));
    const enrollSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    const loaded = (await procUsage(broker.pid!)).rss;
    publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: "floor-publisher", reconnectPeriod: 0, protocolVersion: 4 });
    const payload = JSON.stringify({ command: { id: "floor", padding: "x".repeat(1500) } });
    const created = process.hrtime.bigint();
    await Promise.all(farm.ids.map((id) => publisher!.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, id, "cmd"), payload, { qos: 1, retain: true })));
    const createMs = Number(process.hrtime.bigint() - created) / 1e6;
    await until(() => farm!.firstCommandAt.size >= devices, "every device's command", 600_000, { intervalMs: 20 });
    const latencies = [...farm.firstCommandAt.values()].map((at) => Number(at - created) / 1e6).sort((a, b) => a - b);
    return { setup: "floor: bare aedes, no server", devices, enrollSeconds, bytesPerDevice: [(loaded - idle) / devices], createMs, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), maxMs: latencies.at(-1)!, takeoverSeconds: null, secondCommands: 0, repeats: 0, reconnects: 0 };
  } finally {
    await publisher?.endAsync(true).catch(() => undefined);
    await farm?.close().catch(() => undefined);
    broker.kill("SIGKILL");
  }
}

export function clusterTable(runs: ClusterRun[]): string[] {
  return [
    "| setup | devices | enroll + first report | memory per device, per server process | POST /rollouts answered | command received p50 / p99 / max | takeover after kill -9 | second, different commands | identical repeats | reconnects |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...runs.map((r) =>
      `| ${r.setup} | ${r.devices} | ${r.enrollSeconds.toFixed(1)} s | ${r.bytesPerDevice.map((b) => `${(b / 1024).toFixed(1)} KiB`).join(", ")} | ${r.createMs.toFixed(0)} ms | ${r.p50Ms.toFixed(0)} / ${r.p99Ms.toFixed(0)} / ${r.maxMs.toFixed(0)} ms | ${r.takeoverSeconds === null ? "-" : `${r.takeoverSeconds.toFixed(1)} s`} | ${r.secondCommands} | ${r.repeats} | ${r.reconnects} |`,
    ),
  ];
}
