/**
 * The fleet benchmark: one real `apt-ostree-server serve` process (embedded aedes, or mosquitto
 * through --mqtt-url) holding N connected devices from a farm in this process. Measures the
 * time to enroll them, the server's memory per device, and the time from `POST /api/v1/rollouts`
 * (one 100% wave) to each device having received its signed command (p50, p99, max).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { generateKeyPair } from "../../shared/sign/ed25519.ts";
import { SERVER_CLI } from "../helpers/cli.ts";
import { freePort, startMosquitto, type RunningMosquitto } from "../helpers/mosquitto.ts";
import { initServerRepo, publishSyntheticVersion } from "../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../helpers/tmp.ts";
import { until } from "../helpers/wait.ts";
import { adminApi } from "../helpers/admin-api.ts";
import { TEST_ADMIN_TOKEN } from "../helpers/server-settings.ts";
import { autoAcceptSettings, TEST_ENROLLMENT_SECRET } from "../helpers/enrollment-secret.ts";
import { startFarm } from "./device-farm.ts";
import { assignGroup } from "./assign-group.ts";
import { procUsage } from "./proc-usage.ts";
import { percentile } from "./stats.ts";

const REF = "bench/bookworm/bench-machine/bench-image";
const GROUP = "bench";

export interface FleetRun {
  broker: "embedded" | "mosquitto";
  devices: number;
  enrollSeconds: number;
  serverIdleMiB: number;
  serverLoadedMiB: number;
  brokerLoadedMiB: number | null;
  bytesPerDevice: number;
  createSeconds: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

async function api(httpPort: number, path: string, body?: unknown): Promise<any> {
  const { status, json } = await adminApi(() => `http://127.0.0.1:${httpPort}`)(path, body);
  if (status >= 300) throw new Error(`${path}: HTTP ${status}: ${JSON.stringify(json)}`);
  return json;
}

/** One scenario: a fresh data dir, server process and farm; everything stopped afterwards. */
export async function benchFleet(broker: FleetRun["broker"], devices: number, log: (line: string) => void): Promise<FleetRun> {
  const dir = await makeTempDir(`bench-fleet-${broker}-${devices}`);
  let server: ChildProcess | null = null;
  let mosquitto: RunningMosquitto | null = null;
  let farm: Awaited<ReturnType<typeof startFarm>> | null = null;
  try {
    const key = generateKeyPair();
    const repo = await initServerRepo(dir, key);
    await publishSyntheticVersion(repo, REF, dir, key, 1);
    if (broker === "mosquitto") mosquitto = await startMosquitto(dir);
    const [httpPort, mqttPort] = [await freePort(), await freePort()];
    const { enrollmentSecretFile } = await autoAcceptSettings(dir);
    const args = [SERVER_CLI, "serve", "--data", join(dir, "data"), "--repo", repo, "--http-port", String(httpPort), "--mqtt-port", String(mqttPort), "--mqtt-ws-port", "off", "--insecure-plain", "--auto-accept", "--enrollment-secret-file", enrollmentSecretFile, "--key", join(dir, "server.secret")];
    if (mosquitto) args.push("--mqtt-url", mosquitto.serverUrl);
    server = spawn(process.execPath, args, { env: { ...process.env, APT_OSTREE_ADMIN_TOKEN: TEST_ADMIN_TOKEN, APT_OSTREE_LOG_LEVEL: "warn" }, stdio: ["ignore", "ignore", "inherit"] });
    await until(async () => (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).ok, "the server to start", 60_000);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const serverIdle = (await procUsage(server.pid!)).rss;
    const brokerIdle = mosquitto ? (await procUsage(mosquitto.pid)).rss : 0;

    const enrollStarted = process.hrtime.bigint();
    farm = await startFarm({ count: devices, port: mosquitto?.port ?? mqttPort, enrollmentSecret: TEST_ENROLLMENT_SECRET, external: mosquitto !== null, group: GROUP, concurrency: 64, idPrefix: `b${devices}` }, (n) => log(`  ${n}/${devices} connected`));
    await until(async () => {
      const fleet = await api(httpPort, "fleet");
      return (fleet.byState?.idle ?? 0) >= devices;
    }, `${devices} devices to be enrolled and reported`, 600_000);
    const enrollSeconds = Number(process.hrtime.bigint() - enrollStarted) / 1e9;
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const serverLoaded = (await procUsage(server.pid!)).rss;
    const brokerLoaded = mosquitto ? (await procUsage(mosquitto.pid)).rss : null;

    await assignGroup(async (path, body) => ({ status: (await adminApi(() => `http://127.0.0.1:${httpPort}`)(path, body)).status }), farm.ids, GROUP);
    const created = process.hrtime.bigint();
    await api(httpPort, "rollouts", { ref: REF, select: { groups: [GROUP] }, waves: "100%", waveDelay: "0s", waveTimeout: "30m" });
    const createSeconds = Number(process.hrtime.bigint() - created) / 1e9;
    await until(() => farm!.firstCommandAt.size >= devices, `all ${devices} devices to receive their command`, 600_000);
    const latencies = [...farm.firstCommandAt.values()].map((at) => Number(at - created) / 1e6).sort((a, b) => a - b);
    const brokerBytes = brokerLoaded === null ? 0 : brokerLoaded - brokerIdle;
    return {
      broker,
      devices,
      enrollSeconds,
      serverIdleMiB: serverIdle / 2 ** 20,
      serverLoadedMiB: serverLoaded / 2 ** 20,
      brokerLoadedMiB: brokerLoaded === null ? null : brokerLoaded / 2 ** 20,
      bytesPerDevice: (serverLoaded - serverIdle + brokerBytes) / devices,
      createSeconds,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      maxMs: latencies.at(-1)!,
    };
  } finally {
    await farm?.close().catch(() => undefined);
    server?.kill("SIGTERM");
    if (server) await new Promise((resolve) => (server!.exitCode !== null ? resolve(null) : server!.once("exit", resolve)));
    mosquitto?.stop();
    await removeTree(dir);
  }
}

export function fleetTable(runs: FleetRun[]): string[] {
  const mib = (n: number) => n.toFixed(1);
  return [
    "| broker | devices | enroll + first report | server RSS idle -> loaded (MiB) | broker RSS (MiB) | memory per device | POST /rollouts returned | command received p50 / p99 / max |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...runs.map((r) =>
      `| ${r.broker} | ${r.devices} | ${r.enrollSeconds.toFixed(1)} s | ${mib(r.serverIdleMiB)} -> ${mib(r.serverLoadedMiB)} | ${r.brokerLoadedMiB === null ? "(in the server)" : mib(r.brokerLoadedMiB)} | ${(r.bytesPerDevice / 1024).toFixed(1)} KiB | ${r.createSeconds.toFixed(2)} s | ${r.p50Ms.toFixed(0)} / ${r.p99Ms.toFixed(0)} / ${r.maxMs.toFixed(0)} ms |`,
    ),
  ];
}
