/**
 * Two `serve` processes on one PostgreSQL database and one broker (a real mosquitto), as an
 * operator who outgrew one process runs them (issue 21): either answers the API with the same
 * fleet, and a dashboard session and its live events work across them; exactly one holds the rollout lease and sends commands, whichever took the rollout;
 * killed with -9 mid-rollout, the other takes the lease within seconds and finishes it, and no
 * device gets a second, different command.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { startMosquitto, type RunningMosquitto } from "../../helpers/mosquitto.ts";
import { startPostgres, type RunningPostgres } from "../../helpers/postgres.ts";
import { startServeProcess, type ServeProcess } from "../../helpers/serve-process.ts";
import { TEST_ADMIN_TOKEN } from "../../helpers/server-settings.ts";
import { SimulatedDevice } from "../../helpers/simulated-device.ts";
import { initServerRepo, publishSyntheticVersion } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";

const REF = "test/bookworm/test-machine/test-image";
const key = generateKeyPair();
let dir = "";
let postgres: RunningPostgres;
let mosquitto: RunningMosquitto;
let instances: ServeProcess[] = [];
const devices = [new SimulatedDevice("multi-a", key.publicKey, ["lab"]), new SimulatedDevice("multi-b", key.publicKey, ["lab"])];

const json = async (instance: ServeProcess, path: string, body?: unknown) => {
  const response = await instance.api(`/api/v1/${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  return { status: response.status, body: (await response.json()) as any };
};
const leaders = async () => {
  const flags = await Promise.all(instances.map((instance) => (instance.exited() === null ? instance.metric("aptostree_rollout_leader") : Promise.resolve(-1))));
  return flags;
};

beforeAll(async () => {
  dir = await makeTempDir("multi-instance");
  postgres = await startPostgres("multi-instance");
  const db = await postgres.createDatabase("fleet");
  mosquitto = await startMosquitto(dir);
  const repo = await initServerRepo(dir, key);
  await publishSyntheticVersion(repo, REF, dir, key, 1);
  for (const name of ["one", "two"]) {
    await mkdir(join(dir, name));
    instances.push(await startServeProcess({ dir: join(dir, name), repo, signingKey: join(dir, "server.secret"), db, mqttUrl: mosquitto.serverUrl }));
  }
}, 120_000);

afterAll(async () => {
  for (const device of devices) await device.disconnect().catch(() => undefined);
  for (const instance of instances) await instance.stop();
  mosquitto?.stop();
  await postgres?.remove();
  await removeTree(dir);
}, 60_000);

describe("two serve instances on one PostgreSQL and one broker", () => {
  it("share the fleet: a device that enrolled through the broker is accepted on either, and both list it", async () => {
    for (const device of devices) await device.connect(mosquitto.port, { external: true });
    await until(async () => (await json(instances[0]!, "devices")).body.devices.length === 2, "both hellos stored", 30_000);
    expect((await json(instances[1]!, "devices/multi-a/accept", {})).status).toBe(200);
    expect((await json(instances[0]!, "devices/multi-b/accept", {})).status).toBe(200);
    for (const device of devices) await device.reportNow("idle");
    for (const instance of instances) {
      await until(async () => (await json(instance, "devices")).body.devices.every((d: any) => d.enrollment === "accepted" && d.state === "idle"), "both accepted and reporting, seen from each instance", 30_000);
    }
  });

  it("keep one dashboard: a session made on one works on the other, whose live events include changes made on the first", async () => {
    const [one, two] = instances as [ServeProcess, ServeProcess];
    const login = await one.fetch(`${one.baseUrl}/login`, { method: "POST", body: new URLSearchParams({ token: TEST_ADMIN_TOKEN }), redirect: "manual" });
    expect(login.status).toBe(303);
    const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
    const page = await two.fetch(`${two.baseUrl}/`, { headers: { cookie }, redirect: "manual" });
    expect(page.status).toBe(200);

    // The event stream of instance two, while instance one changes a device's tags.
    const events = await two.fetch(`${two.baseUrl}/api/v1/events`, { headers: { cookie } });
    expect(events.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = events.body!.getReader();
    let seen = "";
    const heard = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return false;
        seen += Buffer.from(value).toString("utf8");
        if (seen.includes('"kind":"device","id":"multi-a"')) return true;
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await json(one, "devices/multi-a/tags", { tags: ["east"] })).status).toBe(200);
    const outcome = await Promise.race([heard, new Promise<false>((resolve) => setTimeout(() => resolve(false), 10_000))]);
    await reader.cancel();
    expect(outcome).toBe(true);
  });

  it("let exactly one of them drive the rollouts", async () => {
    await until(async () => (await leaders()).reduce((a, b) => a + b, 0) === 1, "one lease holder", 30_000);
    expect((await leaders()).sort()).toEqual([0, 1]);
  });

  it("finish a rollout created on the follower after the leader is killed with -9 mid-rollout, with one command per device", async () => {
    await publishSyntheticVersion(join(dir, "repo"), REF, dir, key, 2);
    const flags = await leaders();
    const leader = instances[flags.indexOf(1)]!;
    const follower = instances[flags.indexOf(0)]!;
    // Wave 1 (multi-a, by the rollout's seeded order or the other: whichever) stays in flight long enough to kill the leader.
    for (const device of devices) device.updateDelayMs = 6000;
    const created = await json(follower, "rollouts", { ref: REF, select: { devices: devices.map((d) => d.id) }, waves: "50%,100%", waveDelay: "0s", waveTimeout: "5m" });
    expect(created.status).toBe(201);
    const rollout = created.body.rollout.id as string;
    const first = await until(() => devices.find((d) => d.commandsReceived.length > 0) ?? null, "the first wave's command, sent by the leader", 30_000);
    const second = devices.find((d) => d !== first)!;

    // Both instances hear every report; the store took each once and the other copy counts as a duplicate, never a replay.
    const reportsSeen = async (outcome: string) => (await leader.metric("aptostree_mqtt_reports_total", { outcome })) + (await follower.metric("aptostree_mqtt_reports_total", { outcome }));
    await until(async () => (await reportsSeen("accepted")) > 0 && (await reportsSeen("duplicate")) === (await reportsSeen("accepted")), "each report stored once and heard twice", 10_000);
    expect(await reportsSeen("replay")).toBe(0);

    const killedAt = Date.now();
    leader.child.kill("SIGKILL");
    await until(async () => (await follower.metric("aptostree_rollout_leader")) === 1, "the other instance to take the lease", 30_000);
    const takeoverMs = Date.now() - killedAt;
    expect(takeoverMs).toBeLessThan(30_000);

    await until(async () => ((await json(follower, `rollouts/${rollout}`)).body.rollout.progress.state === "completed" ? true : null), "the rollout to complete on the survivor", 60_000);
    const done = (await json(follower, `rollouts/${rollout}`)).body.rollout;
    expect(done.devices.map((m: any) => m.status)).toEqual(["healthy", "healthy"]);
    // One command per device: the second wave's was sent once, by the new leader; the first
    // device may hear its identical command again (the takeover re-publishes what may have been
    // lost with the dead leader) and answers it with a report, never a second update.
    expect(second.commandsReceived).toEqual([rollout]);
    expect(first.distinctCommands()).toEqual([rollout]);
    for (const device of devices) expect(device.booted.version).toBe("2");
    expect(follower.log()).toMatch(/"event":"rollout.lease.taken"/);
    expect(await follower.metric("aptostree_mqtt_reports_total", { outcome: "replay" })).toBe(0);
  }, 120_000);
});
