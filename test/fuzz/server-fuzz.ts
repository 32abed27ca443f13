/**
 * The server's hostile-input campaign: a real `serve` process attacked from outside with random
 * and mutated MQTT packets, reports, last wills, hellos and HTTP requests, from enrolled devices
 * and from strangers. After every batch: the process is alive, its RSS under a bound, /healthz
 * answers, every device's stored state is the one its last valid signed report said, and no
 * device exists that no valid token named.
 */
import { connect as connectTcp } from "node:net";
import mqtt, { type MqttClient } from "mqtt";
import mqttPacket from "mqtt-packet";
import { generateKeyPair, type Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../shared/wire/device-token.ts";
import { signReport, verifyReport, type Report } from "../../shared/wire/report.ts";
import { deviceTopic } from "../../shared/wire/topics.ts";
import { startServeProcess, type ServeProcess } from "../helpers/serve-process.ts";
import { TEST_ADMIN_TOKEN } from "../helpers/server-settings.ts";
import { makeTempDir, removeTree } from "../helpers/tmp.ts";
import { Prng } from "./prng.ts";
import { countRefusal, type FuzzReport, type FuzzRunOptions } from "./report.ts";
import { TEST_ENROLLMENT_SECRET } from "../helpers/enrollment-secret.ts";

const P = "apt-ostree/";
const BATCH = 25;
/** The server idles near 100 MiB; a leak or an unbounded buffer shows well before this. */
const RSS_BOUND_BYTES = 400 * 1024 * 1024;
const STATES: Report["state"][] = ["idle", "downloading", "staged", "healthy", "failed"];

interface ModelDevice {
  id: string;
  key: Ed25519KeyPair;
  client: MqttClient;
  counter: number;
  /** What the store must say: the last report that verified. */
  state: Report["state"] | null;
  lastCounter: number | null;
  accepted: string[];
}

type Case = (prng: Prng, ctx: Context) => Promise<string>;

interface Context {
  server: ServeProcess;
  devices: ModelDevice[];
  dataDir: string;
  /** Ids a valid token named: the only ones the store may hold. */
  allowedIds: Set<string>;
  report: FuzzReport;
  /** The seed of the case running now: what a failure records to be replayed. */
  caseSeed: number;
}

export async function fuzzServer(options: FuzzRunOptions): Promise<FuzzReport> {
  const started = Date.now();
  const report: FuzzReport = { suite: "server", seed: options.seed, cases: 0, seconds: 0, refusals: {}, peakRssBytes: 0, failures: [] };
  const dir = await makeTempDir("fuzz-server");
  // The per-device budget would refuse most of a campaign's messages before they reach the code
  // under test: it is generous here, and proved on its own in hostile-fleet.test.ts.
  const server = await startServeProcess({ dir, autoAccept: true, limits: { mqttConnectTimeoutSeconds: 2, deviceMessageBurst: 1_000_000, deviceMessagesPerMinute: 1_000_000 } });
  const prng = new Prng(options.seed);
  const ctx: Context = { server, devices: [], dataDir: dir, allowedIds: new Set(), report, caseSeed: options.seed };
  try {
    for (let i = 0; i < 3; i++) ctx.devices.push(await enrolledDevice(ctx, `fz-dev-${i}`));
    const limit = options.cases ?? Number.POSITIVE_INFINITY;
    let logged = 0;
    while (report.cases < limit && (options.deadline === undefined || Date.now() < options.deadline)) {
      const caseSeed = prng.int(2 ** 31);
      const casePrng = new Prng(caseSeed);
      ctx.caseSeed = caseSeed;
      const [name, run] = casePrng.pick(CASES);
      let what = name;
      try {
        what = `${name}: ${await run(casePrng, ctx)}`;
      } catch (error) {
        report.failures.push({ seed: caseSeed, case: report.cases, what: `${name} threw in the fuzzer: ${(error as Error).message}`, input: "" });
      }
      report.cases++;
      if (report.cases % BATCH === 0 || report.cases === limit) {
        const problem = await checkInvariants(ctx);
        if (problem) {
          report.failures.push({ seed: caseSeed, case: report.cases, what: `${problem} (after ${what})`, input: `APT_OSTREE_FUZZ_SEED=${options.seed}` });
          if (server.exited() !== null) break;
        }
        for (const failure of report.failures.slice(logged)) options.log?.(`FAIL case ${failure.case} (seed ${failure.seed}): ${failure.what}; input ${failure.input.slice(0, 400)}`);
        logged = report.failures.length;
        options.log?.(`server fuzz: ${report.cases} cases, RSS ${(report.peakRssBytes / 1048576).toFixed(0)} MiB peak, ${report.failures.length} failures`);
      }
    }
    await collectRefusals(ctx);
  } finally {
    for (const device of ctx.devices) device.client.end(true);
    await server.stop();
    await removeTree(dir);
  }
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

function connectDevice(server: ServeProcess, id: string, key: Ed25519KeyPair, extra: mqtt.IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${server.mqttPort}`, {
      clientId: id, username: id, protocolVersion: 4, reconnectPeriod: 200, connectTimeout: 5000,
      ...extra,
      password: createDeviceToken(id, key, new Date(), undefined, TEST_ENROLLMENT_SECRET),
    });
    client.on("error", () => undefined);
    client.once("connect", () => resolve(client));
    // Without reconnecting, a refused CONNECT (a will the server will not keep) is final.
    if (extra.reconnectPeriod === 0) client.once("close", () => reject(new Error(`${id} was refused`)));
    setTimeout(() => reject(new Error(`${id} did not connect`)), 10_000).unref();
  });
}

async function enrolledDevice(ctx: Context, id: string): Promise<ModelDevice> {
  const key = generateKeyPair();
  ctx.allowedIds.add(id);
  const client = await connectDevice(ctx.server, id, key);
  // Each reconnect needs a token signed now.
  client.on("reconnect", () => (client.options.password = createDeviceToken(id, key, new Date(), undefined, TEST_ENROLLMENT_SECRET)));
  return { id, key, client, counter: 0, state: null, lastCounter: null, accepted: [] };
}

/** Publishes as the device and updates the model by what the server's own rules say of it. */
async function publishReport(ctx: Context, device: ModelDevice, payload: Buffer | string): Promise<boolean> {
  let verified: Report | null = null;
  try {
    verified = verifyReport(payload, { deviceId: device.id, publicKey: device.key.publicKey, lastCounter: device.lastCounter });
  } catch {
    verified = null;
  }
  const bytes = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
  // QoS 1 only for what must arrive: mqtt.js sends an unacknowledged QoS 1 message again after
  // each reconnect, and a packet over the limit would have the server cut it forever.
  await withTimeout(device.client.publishAsync(deviceTopic(P, device.id, "state"), payload as Buffer, { qos: verified ? 1 : 0 }), 10_000);
  // Above the packet limit the server cuts the connection: nothing of it is stored.
  if (verified && bytes < 60_000) {
    device.state = verified.state;
    device.lastCounter = verified.counter;
    device.accepted.push(typeof payload === "string" ? payload : payload.toString("utf8"));
  }
  return verified !== null;
}

function validReport(device: ModelDevice, prng: Prng, extra: Partial<Report> = {}): Report {
  device.counter = Math.max(device.counter, device.lastCounter ?? 0) + 1;
  return { deviceId: device.id, counter: device.counter, sent: new Date().toISOString(), state: prng.pick(STATES), ...extra };
}

const deep = (levels: number) => `${"[".repeat(levels)}${"]".repeat(levels)}`;
const HOSTILE_VALUES = ["1e999", "-1e999", deep(3000), `"${"x".repeat(70_000)}"`, "null", "{}", "[]", '"constructor"', '{"__proto__":{"polluted":1}}', "123456789012345678901234567890", '"\\ud800"', "true"];
const REPORT_KEYS = ["deviceId", "counter", "sent", "state", "agentVersion", "groups", "booted", "health", "error", "progress", "rolledBack", "__proto__", "constructor"];

const CASES: ReadonlyArray<readonly [string, Case]> = [
  ["valid report", async (prng, ctx) => {
    const device = prng.pick(ctx.devices);
    await publishReport(ctx, device, signReport(validReport(device, prng), device.key));
    return device.id;
  }],
  ["mutated report bytes", async (prng, ctx) => {
    const device = prng.pick(ctx.devices);
    const payload = prng.mutate(Buffer.from(signReport(validReport(device, prng), device.key)));
    await publishReport(ctx, device, payload);
    return payload.toString("hex").slice(0, 200);
  }],
  ["hostile report value", async (prng, ctx) => {
    const device = prng.pick(ctx.devices);
    const text = `{"report":{"deviceId":"${device.id}","counter":${device.counter + 1},"sent":"${new Date().toISOString()}","state":"idle","${prng.pick(REPORT_KEYS)}":${prng.pick(HOSTILE_VALUES)}},"sig":"${prng.bytes(64).toString("base64")}"}`;
    await publishReport(ctx, device, text);
    return text.slice(0, 200);
  }],
  ["signed report out of bounds", async (prng, ctx) => {
    const device = prng.pick(ctx.devices);
    const huge = "y".repeat(2049 + prng.int(20_000));
    const extra: Partial<Report> = prng.pick<Partial<Report>>([
      { error: huge },
      { agentVersion: huge.slice(0, 300) },
      { groups: Array.from({ length: 40 }, (_, i) => `g${i}`) },
      { health: Array.from({ length: 17 }, (_, i) => ({ name: `c${i}`, kind: "required" as const, ok: true, output: "" })) },
      { booted: { commit: "a".repeat(64), version: huge.slice(0, 257) } },
    ]);
    await publishReport(ctx, device, signReport(validReport(device, prng, extra), device.key));
    return Object.keys(extra)[0]!;
  }],
  ["replayed report", async (prng, ctx) => {
    const device = prng.pick(ctx.devices);
    if (device.accepted.length === 0) return "nothing to replay yet";
    await publishReport(ctx, device, prng.pick(device.accepted));
    return device.id;
  }],
  ["last will", async (prng, ctx) => {
    const id = `fz-will-${prng.int(4)}`;
    ctx.allowedIds.add(id);
    const key = willKeys.get(id) ?? generateKeyPair();
    willKeys.set(id, key);
    const payload = prng.chance(0.5) ? Buffer.from(`{"report":{"counter":${prng.pick(HOSTILE_VALUES)}},"sig":"AAAA"}`) : prng.mutate(Buffer.from(signReport({ deviceId: id, counter: 1, sent: new Date().toISOString(), state: "idle" }, key)));
    const client = await connectDevice(ctx.server, id, key, { reconnectPeriod: 0, will: { topic: deviceTopic(P, id, prng.pick(["state", "online", "hello"] as const)), payload, qos: 0, retain: false } }).catch(() => null);
    client?.stream.destroy();
    client?.end(true);
    return payload.toString("hex").slice(0, 200);
  }],
  ["hello", async (prng, ctx) => {
    const device = prng.pick(ctx.devices);
    const token = createDeviceToken(device.id, device.key, new Date());
    const payload = prng.chance(0.3) ? prng.bytes(prng.int(70_000)) : prng.mutate(Buffer.from(token));
    await withTimeout(device.client.publishAsync(deviceTopic(P, device.id, "hello"), payload, { qos: 0 }), 10_000);
    return payload.toString("hex").slice(0, 200);
  }],
  ["stranger connect", async (prng, ctx) => {
    const key = generateKeyPair();
    const id = `fz-stranger-${prng.int(1e6)}`;
    const token = createDeviceToken(id, key, new Date());
    const password = prng.mutate(Buffer.from(token));
    // A mutation that leaves the token valid (it hardly can) may enroll the id: allowed then.
    if (password.toString() === token) ctx.allowedIds.add(id);
    const client = mqtt.connect(`mqtt://127.0.0.1:${ctx.server.mqttPort}`, { clientId: id, username: prng.chance(0.8) ? id : prng.bytes(8).toString("hex"), password, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 3000 });
    client.on("error", () => undefined);
    await new Promise<void>((resolve) => {
      client.once("connect", () => resolve());
      client.once("close", () => resolve());
    });
    if (client.connected) ctx.allowedIds.add(id);
    client.end(true);
    return password.toString("hex").slice(0, 200);
  }],
  ["raw MQTT bytes", async (prng, ctx) => {
    const packets = [
      mqttPacket.generate({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clean: true, clientId: "fz-raw", keepalive: 30, username: "fz-raw", password: Buffer.from("x") }),
      mqttPacket.generate({ cmd: "publish", topic: `${P}devices/fz-dev-0/state`, payload: Buffer.from("{}"), qos: 0, retain: false, dup: false }),
      mqttPacket.generate({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 1 }] }),
      mqttPacket.generate({ cmd: "pingreq" }),
    ];
    const bytes = prng.chance(0.2) ? prng.bytes(1 + prng.int(4096)) : prng.mutate(Buffer.concat(packets.slice(0, 1 + prng.int(packets.length))));
    await new Promise<void>((resolve) => {
      const socket = connectTcp(ctx.server.mqttPort, "127.0.0.1", () => {
        socket.write(bytes);
        setTimeout(() => socket.destroy(), 20 + prng.int(80));
      });
      socket.on("error", () => undefined);
      socket.on("close", () => resolve());
    });
    return bytes.toString("hex").slice(0, 200);
  }],
  ["HTTP request", async (prng, ctx) => {
    const { status, body, path, method } = await hostileHttp(prng, ctx);
    if (status >= 500) ctx.report.failures.push({ seed: ctx.caseSeed, case: ctx.report.cases, what: `HTTP ${status} for ${method} ${path}`, input: body.slice(0, 300) });
    if (body.includes(ctx.dataDir)) ctx.report.failures.push({ seed: ctx.caseSeed, case: ctx.report.cases, what: `a server path in the answer to ${method} ${path}`, input: body.slice(0, 300) });
    countRefusal(ctx.report, `http ${status}`);
    return `${method} ${path.slice(0, 120)} -> ${status}`;
  }],
];
const willKeys = new Map<string, Ed25519KeyPair>();

/** Waits for `promise` at most `ms`; a publish to a connection the server cut may never settle. */
async function withTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

const PATHS = ["/", "/healthz", "/metrics", "/login", "/logout", "/assets/app.js", "/repo/config", "/repo/summary", "/repo/channels/stable/x.json", "/api/v1/openapi.json", "/api/v1/fleet", "/api/v1/devices", "/api/v1/devices/fz-dev-0", "/api/v1/rollouts", "/api/v1/releases", "/api/v1/events"];
const PATH_JUNK = ["..", "%2e%2e", "%00", "%", "%zz", "/", "//", ".hidden", "a".repeat(3000), "constructor", "__proto__", "%2f", "\\", "?x=1", "#", "~"];

async function hostileHttp(prng: Prng, ctx: Context): Promise<{ status: number; body: string; path: string; method: string }> {
  let path = prng.pick(PATHS);
  if (prng.chance(0.6)) path += `/${Array.from({ length: 1 + prng.int(3) }, () => prng.pick(PATH_JUNK)).join("/")}`;
  // With the token only reads and writes that cannot touch the devices the model follows.
  const authenticated = prng.chance(0.4);
  const method = authenticated ? prng.pick(["GET", "HEAD", "POST"]) : prng.pick(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
  if (authenticated && method === "POST") path = prng.pick(["/api/v1/rollouts", "/api/v1/devices/fz-nobody/tags", "/api/v1/devices/fz-nobody/accept", "/login"]);
  const headers: Record<string, string> = {};
  if (authenticated) headers.authorization = `Bearer ${TEST_ADMIN_TOKEN}`;
  else if (prng.chance(0.3)) headers.authorization = prng.pick(["Bearer ", "Bearer x", "Basic abc", `Bearer ${"a".repeat(5000)}`]);
  if (prng.chance(0.3)) headers.cookie = prng.pick(["apt_ostree_session=v2.99999999999.AAAA", `apt_ostree_session=${"x".repeat(4000)}`, "a=b; apt_ostree_session=", "apt_ostree_session=v2.1.x"]);
  if (prng.chance(0.2)) headers.range = prng.pick(["bytes=0-", "bytes=-1", "bytes=99999999999-", "bytes=5-1", "bytes=0-1,2-3,4-5", "x"]);
  if (prng.chance(0.2)) headers["if-none-match"] = prng.pick(['"x"', "*", "W/\"\""]);
  let body: Buffer | undefined;
  if (method === "POST" || method === "PUT" || method === "PATCH") {
    headers["content-type"] = prng.pick(["application/json", "application/x-www-form-urlencoded", "text/plain", "application/json; charset=utf-8"]);
    const valid = JSON.stringify(prng.pick([{ ref: "a/b", select: { devices: ["fz-nobody"] } }, { tags: ["a", "b"] }, { token: "x" }]));
    body = prng.chance(0.2) ? prng.bytes(prng.int(100_000)) : prng.mutate(Buffer.from(prng.chance(0.3) ? `{"a":${prng.pick(HOSTILE_VALUES)}}` : valid));
  }
  const res = await fetch(`http://127.0.0.1:${ctx.server.httpPort}${path}`, { method, headers, body: body ? new Uint8Array(body) : undefined, redirect: "manual", signal: AbortSignal.timeout(10_000) }).catch((error: Error) => ({ status: 0, text: async () => error.message, headers: new Headers() }));
  const streaming = path.startsWith("/api/v1/events") && res.status === 200;
  if (streaming) await (res as Response).body?.cancel().catch(() => undefined);
  const text = streaming ? "" : await res.text().catch(() => "");
  return { status: res.status, body: `${text}${[...res.headers.entries()].map(([k, v]) => `${k}: ${v}`).join("\n")}`, path, method };
}

async function checkInvariants(ctx: Context): Promise<string | null> {
  const { server } = ctx;
  if (server.exited() !== null) return `the server exited (${server.exited()}); log tail: ${server.log().slice(-1500)}`;
  const rss = await server.rss().catch(() => 0);
  ctx.report.peakRssBytes = Math.max(ctx.report.peakRssBytes, rss);
  if (rss > RSS_BOUND_BYTES) return `RSS ${(rss / 1048576).toFixed(0)} MiB is above ${(RSS_BOUND_BYTES / 1048576).toFixed(0)} MiB`;
  const health = await fetch(`http://127.0.0.1:${server.httpPort}/healthz`, { signal: AbortSignal.timeout(5000) }).catch(() => null);
  if (health?.status !== 200) return `/healthz answered ${health?.status ?? "nothing"}`;
  // A valid report from each device, seen stored, marks that everything it sent before was handled.
  for (const device of ctx.devices) {
    const marker = signReport(validReport(device, new Prng(device.counter)), device.key);
    await publishReport(ctx, device, marker);
    const deadline = Date.now() + 15_000;
    let stored: { state: string | null; lastCounter: number | null } | null = null;
    while (Date.now() < deadline) {
      stored = (await (await server.api(`/api/v1/devices/${device.id}`)).json()).device;
      if (stored?.lastCounter === device.lastCounter) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (stored?.lastCounter !== device.lastCounter || stored?.state !== device.state) {
      return `${device.id}: stored ${JSON.stringify(stored && { state: stored.state, lastCounter: stored.lastCounter })}, but its last valid report said ${JSON.stringify({ state: device.state, lastCounter: device.lastCounter })}`;
    }
  }
  const listed: Array<{ id: string }> = (await (await server.api("/api/v1/devices")).json()).devices;
  const stray = listed.filter((d) => !ctx.allowedIds.has(d.id));
  if (stray.length > 0) return `devices no valid token named are stored: ${stray.map((d) => d.id).slice(0, 5).join(", ")}`;
  return null;
}

/** The server's own counts of what it refused, as the campaign's refusals by reason. */
async function collectRefusals(ctx: Context): Promise<void> {
  const text = await (await fetch(`http://127.0.0.1:${ctx.server.httpPort}/metrics`)).text().catch(() => "");
  for (const line of text.split("\n")) {
    const match = /^(aptostree_(?:mqtt_(?:reports_total|hellos_total|dropped_total|connections_refused_total|denied_total|handler_errors_total|ingest_errors_total|rate_limited_total)|devices_enrollment_refused_total))(\{[^}]*\})? (\d+)$/.exec(line);
    if (match && Number(match[3]) > 0) countRefusal(ctx.report, `${match[1]}${match[2] ?? ""}`, Number(match[3]));
  }
}
