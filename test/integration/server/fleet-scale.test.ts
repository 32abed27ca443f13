/**
 * Registry flood (issue 18, finding 3): with 50 000 pending devices in the store, `/metrics` and
 * the fleet summary answer correct counts from aggregate queries, and neither reads the device
 * list (once 300-460 ms of blocked event loop per scrape).
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import mqtt from "mqtt";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { SqliteFleetStore } from "../../../server/fleet/store-sqlite.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { adminApi } from "../../helpers/admin-api.ts";
import { testServerSettings } from "../../helpers/server-settings.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const PENDING = 50_000;
let dir: string;
let server: RunningServer;
const api = adminApi(() => `http://127.0.0.1:${server.httpPort}`);

/** Writes the flood straight into the store's file, as thousands of hellos would have. */
async function seedStore(file: string): Promise<void> {
  await new SqliteFleetStore(file).close();
  const db = new Database(file);
  const at = new Date().toISOString();
  db.prepare(
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
     INSERT INTO devices (id, public_key, enrollment, enrolled_at) SELECT printf('flood-%05d', i), 'KEY', 'pending', ? FROM n`,
  ).run(PENDING, at);
  const accepted = db.prepare("INSERT INTO devices (id, public_key, enrollment, enrolled_at, state, booted_json, online) VALUES (?, 'KEY', 'accepted', ?, ?, ?, ?)");
  accepted.run("real-1", at, "healthy", JSON.stringify({ commit: "1".repeat(64), version: "2" }), 1);
  accepted.run("real-2", at, "healthy", JSON.stringify({ commit: "1".repeat(64), version: "2" }), 0);
  accepted.run("real-3", at, "failed", JSON.stringify({ commit: "2".repeat(64), version: "1" }), 1);
  db.prepare("INSERT INTO devices (id, public_key, enrollment, enrolled_at) VALUES ('spammer', 'KEY', 'rejected', ?)").run(at);
  db.close();
  // A running rollout whose one device is done: the first tick completes it.
  const store = new SqliteFleetStore(file);
  await store.createRollout(
    { id: "r-seed", ref: "x", channel: "stable", version: "2", commit: "1".repeat(64), selector: { groups: [], tags: [], devices: ["real-1"] }, plan: { waves: [100], waveDelaySeconds: 0, waveTimeoutSeconds: 60, maxFailuresPercent: 0 }, progress: { state: "running", currentWave: 0, waveStartedAt: at, waveCompletedAt: null }, pauseReason: null, createdAt: at, updatedAt: at },
    [{ deviceId: "real-1", wave: 0 }],
  );
  await store.setRolloutDeviceStatus("r-seed", "real-1", "healthy", null, new Date());
  await store.close();
}

beforeAll(async () => {
  dir = await makeTempDir("fleet-scale");
  await initRepo(join(dir, "repo"), "archive");
  await mkdir(join(dir, "data"));
  await seedStore(join(dir, "data", "fleet.db"));
  const listDevices = vi.spyOn(SqliteFleetStore.prototype, "listDevices");
  server = await startServer({ ...testServerSettings({ repo: join(dir, "repo"), data: join(dir, "data") }), tickMilliseconds: 3_600_000 }, silentLogger());
  // The start's own tick (resume) completed the seeded rollout without reading the device list.
  expect(listDevices).not.toHaveBeenCalled();
  listDevices.mockRestore();
}, 120_000);
afterAll(async () => {
  await server?.close();
  await removeTree(dir);
});

function metricLines(text: string, name: string): string[] {
  return text.split("\n").filter((line) => line.startsWith(`${name}{`)).sort();
}

describe(`a store holding ${PENDING} pending devices`, () => {
  it("answers /metrics with the right counts without reading the device list", async () => {
    const listDevices = vi.spyOn(server.store, "listDevices");
    const text = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
    expect(metricLines(text, "aptostree_devices_enrollment")).toEqual([
      'aptostree_devices_enrollment{enrollment="accepted"} 3',
      `aptostree_devices_enrollment{enrollment="pending"} ${PENDING}`,
      // Every enrollment state is exported, the empty ones as 0 (issue 19 added the last two).
      'aptostree_devices_enrollment{enrollment="preauthorized"} 0',
      'aptostree_devices_enrollment{enrollment="rejected"} 1',
      'aptostree_devices_enrollment{enrollment="revoked"} 0',
    ]);
    expect(metricLines(text, "aptostree_devices")).toEqual(['aptostree_devices{state="failed"} 1', 'aptostree_devices{state="healthy"} 2']);
    expect(metricLines(text, "aptostree_rollouts")).toEqual(['aptostree_rollouts{state="completed"} 1']);
    expect(listDevices).not.toHaveBeenCalled();
  });

  it("answers the fleet summary from counts too", async () => {
    const listDevices = vi.spyOn(server.store, "listDevices");
    const { status, json } = await api("fleet");
    expect(status).toBe(200);
    expect(json).toMatchObject({ devices: PENDING + 4, online: 2, byEnrollment: { pending: PENDING, accepted: 3, rejected: 1 }, byState: { healthy: 2, failed: 1 }, byVersion: { "2": 2, "1": 1 } });
    expect(json.rollouts).toEqual([{ id: "r-seed", ref: "x", version: "2", state: "completed", devices: 1, healthy: 1, failed: 0, rolledBack: 0 }]);
    expect(listDevices).not.toHaveBeenCalled();
  });

  it("refuses a further unknown device over MQTT: the registry is full", async () => {
    const id = "one-more";
    const client = mqtt.connect(`mqtt://127.0.0.1:${server.mqttPort}`, { clientId: id, username: id, password: createDeviceToken(id, generateKeyPair(), new Date()), reconnectPeriod: 0, protocolVersion: 4 });
    const error = await new Promise<Error & { code?: number }>((resolve) => client.once("error", resolve));
    client.end(true);
    expect(error.code).toBe(3);
    expect(await server.store.getDevice(id)).toBeNull();
    const text = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
    expect(text).toMatch(/^aptostree_devices_enrollment_refused_total\{reason="pending-full"\} 1$/m);
  });
});
