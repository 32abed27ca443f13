/**
 * Enrollment an attacker cannot win (issue 19), against the real `serve` process: preauthorized
 * keys, auto-accept only with a proof of the fleet enrollment secret, revoke and rekey, and
 * rollout groups that only the operator assigns. Every refusal is checked in the log and the
 * metrics.
 */
import { join } from "node:path";
import { execa } from "execa";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair, type Ed25519KeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { adminApi } from "../../helpers/admin-api.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { TEST_ENROLLMENT_SECRET } from "../../helpers/enrollment-secret.ts";
import { startServeProcess, type ServeProcess } from "../../helpers/serve-process.ts";
import { TEST_ADMIN_TOKEN } from "../../helpers/server-settings.ts";
import { SimulatedDevice } from "../../helpers/simulated-device.ts";
import { initServerRepo, publishSyntheticVersion } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";

const REF = "test/bookworm/test-machine/test-image";
const serverKey = generateKeyPair();
let dir: string;
let server: ServeProcess;
const clients: mqtt.MqttClient[] = [];
const devices: SimulatedDevice[] = [];
const api = adminApi(() => `http://127.0.0.1:${server.httpPort}`);
const b64 = (key: Ed25519KeyPair) => Buffer.from(key.publicKey).toString("base64");
const cli = (...args: string[]) => execa(process.execPath, [SERVER_CLI, "device", ...args, "--server", `http://127.0.0.1:${server.httpPort}`], { env: { APT_OSTREE_ADMIN_TOKEN: TEST_ADMIN_TOKEN }, reject: false });

/** Connects as `id` with `key`; resolves with the client, or with the broker's refusal. */
function connect(id: string, key: Ed25519KeyPair, secret: Uint8Array | null): Promise<{ client: mqtt.MqttClient } | { refused: string }> {
  return new Promise((resolve) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${server.mqttPort}`, { clientId: id, username: id, password: createDeviceToken(id, key, new Date(), undefined, secret), reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(client);
    client.once("connect", () => resolve({ client }));
    client.once("error", (error) => resolve({ refused: error.message }));
  });
}

/** The reasons the server logged for refusing `id`'s connections. */
function loggedRefusals(id: string): string[] {
  return server.log().split("\n").filter((line) => line.includes('"mqtt.connect.refused"') && line.includes(`"clientId":"${id}"`)).map((line) => JSON.parse(line).reason as string);
}

/** The reasons, once the log holds at least `count` of them (stderr may trail the CONNACK). */
async function refusals(id: string, count = 1): Promise<string[]> {
  await until(async () => loggedRefusals(id).length >= count, `${count} refusal(s) of ${id} in the log`, 10_000);
  return loggedRefusals(id);
}

beforeAll(async () => {
  dir = await makeTempDir("enrollment");
  const repo = await initServerRepo(dir, serverKey);
  await publishSyntheticVersion(repo, REF, dir, serverKey, 1);
  server = await startServeProcess({ dir, repo, autoAccept: true, signingKey: join(dir, "server.secret") });
}, 120_000);
afterAll(async () => {
  for (const client of clients) client.end(true);
  for (const device of devices) await device.disconnect().catch(() => undefined);
  await server?.stop();
  await removeTree(dir);
});

describe("serve", () => {
  it("refuses --auto-accept without an enrollment secret and says what to pass", async () => {
    const started = await execa(process.execPath, [SERVER_CLI, "serve", "--repo", join(dir, "repo"), "--data", join(dir, "refused"), "--auto-accept", "--http-port", "0", "--mqtt-port", "0", "--mqtt-ws-port", "off", "--host", "127.0.0.1"], {
      env: { APT_OSTREE_ADMIN_TOKEN: TEST_ADMIN_TOKEN, APT_OSTREE_INSECURE_PLAIN: "1" }, reject: false, timeout: 30_000,
    });
    expect(started.exitCode).not.toBe(0);
    expect(started.stderr).toMatch(/--auto-accept admits only devices that prove the fleet enrollment secret: pass --enrollment-secret-file FILE/);
  });
});

describe("preauthorization", () => {
  it("accepts a preauthorized device at its first connection with its key; another key is refused, logged, counted and not stored", async () => {
    const key = generateKeyPair();
    const made = await cli("preauthorize", "--id", "pre-1", "--key", b64(key), "--groups", "lab");
    expect(made.stdout).toBe("Preauthorized pre-1 in lab");
    const impostor = await connect("pre-1", generateKeyPair(), TEST_ENROLLMENT_SECRET);
    expect(impostor).toEqual({ refused: "Connection refused: Bad username or password" });
    expect(await refusals("pre-1")).toEqual(["'pre-1' is preauthorized with another key; the key it presents is refused (preauthorize it again to change the key)"]);
    expect(await server.metric("aptostree_devices_enrollment_refused_total", { reason: "preauthorized-key-mismatch" })).toBe(1);
    expect((await api("devices/pre-1")).json.device).toMatchObject({ enrollment: "preauthorized", publicKey: b64(key), groups: ["lab"] });
    expect(await connect("pre-1", key, null)).toHaveProperty("client");
    expect((await api("devices/pre-1")).json.device).toMatchObject({ enrollment: "accepted", groups: ["lab"] });
  });

  it("validates the body and refuses to preauthorize an accepted device", async () => {
    const bad = await api("devices", { id: "pre-2", publicKey: "not-a-key" });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/^publicKey: is not a base64 ed25519 public key/);
    const again = await api("devices", { id: "pre-1", publicKey: b64(generateKeyPair()) });
    expect(again.status).toBe(409);
    expect(again.json.error.message).toBe("device 'pre-1' is already accepted; 'device rekey pre-1 --key PUB' gives it another key");
  });
});

describe("auto-accept", () => {
  it("accepts an unknown device whose token proves the enrollment secret", async () => {
    expect(await connect("auto-1", generateKeyPair(), TEST_ENROLLMENT_SECRET)).toHaveProperty("client");
    expect((await api("devices/auto-1")).json.device.enrollment).toBe("accepted");
    expect(await server.metric("aptostree_devices_enrollment_proofs_total", { outcome: "valid" })).toBeGreaterThanOrEqual(1);
  });

  const cases: Array<[string, Uint8Array | null, string, RegExp]> = [
    ["no proof", null, "missing", /carries no enrollment proof/],
    ["a proof under another secret", new Uint8Array(Buffer.from("not-the-fleet-secret-0123456789")), "invalid", /its enrollment proof does not match the fleet enrollment secret/],
  ];
  it.each(cases)("leaves a device with %s pending, logged and counted", async (_name, secret, outcome, reason) => {
    const id = `auto-${outcome}`;
    expect(await connect(id, generateKeyPair(), secret)).toEqual({ refused: "Connection refused: Not authorized" });
    expect(await refusals(id)).toHaveLength(1);
    expect((await refusals(id))[0]).toMatch(reason);
    expect(await server.metric("aptostree_devices_enrollment_proofs_total", { outcome })).toBe(1);
    expect((await api(`devices/${id}`)).json.device.enrollment).toBe("pending");
  });
});

describe("revoke and rekey", () => {
  it("revokes a connected device: disconnected at once, refused from then on, its key refused under any id", async () => {
    const key = generateKeyPair();
    const connected = await connect("rev-1", key, TEST_ENROLLMENT_SECRET);
    if (!("client" in connected)) throw new Error(connected.refused);
    const closed = new Promise<void>((resolve) => connected.client.once("close", () => resolve()));
    expect((await cli("revoke", "rev-1")).stdout).toBe("Revoked rev-1; its key is refused from now on");
    await closed;
    expect((await api("devices/rev-1")).json.device).toMatchObject({ enrollment: "revoked", online: false });
    expect(await connect("rev-1", key, TEST_ENROLLMENT_SECRET)).toEqual({ refused: "Connection refused: Not authorized" });
    expect((await refusals("rev-1", 1)).at(-1)).toMatch(/^the key 'rev-1' presents was revoked with device 'rev-1' at /);
    expect(await connect("rev-1", generateKeyPair(), TEST_ENROLLMENT_SECRET)).toEqual({ refused: "Connection refused: Not authorized" });
    expect((await refusals("rev-1", 2)).at(-1)).toBe("device 'rev-1' is revoked; 'apt-ostree-server device rekey rev-1 --key PUB' admits it again with a new key");
    // Pending re-enrollment with the same key, under another id, is refused and stores nothing.
    expect(await connect("rev-1-again", key, null)).toEqual({ refused: "Connection refused: Not authorized" });
    expect((await refusals("rev-1-again"))[0]).toMatch(/was revoked with device 'rev-1'/);
    expect((await api("devices/rev-1-again")).status).toBe(404);
    expect(await server.metric("aptostree_devices_enrollment_refused_total", { reason: "revoked-key" })).toBe(2);
    expect(await server.metric("aptostree_devices_enrollment_refused_total", { reason: "revoked" })).toBe(1);
    const accept = await api("devices/rev-1/accept", {});
    expect(accept.status).toBe(409);
    expect(accept.json.error.message).toMatch(/is revoked and its key barred; 'device rekey rev-1 --key PUB'/);
  });

  it("rekeys a device: the new key is accepted, the old one refused from then on", async () => {
    const [oldKey, newKey] = [generateKeyPair(), generateKeyPair()];
    const connected = await connect("rekey-1", oldKey, TEST_ENROLLMENT_SECRET);
    if (!("client" in connected)) throw new Error(connected.refused);
    const closed = new Promise<void>((resolve) => connected.client.once("close", () => resolve()));
    const rekeyed = await cli("rekey", "rekey-1", "--key", b64(newKey));
    expect(rekeyed.stdout).toBe(`rekey-1: new key ${b64(newKey)} (accepted)`);
    await closed;
    expect(await connect("rekey-1", oldKey, TEST_ENROLLMENT_SECRET)).toEqual({ refused: "Connection refused: Not authorized" });
    expect((await refusals("rekey-1")).at(-1)).toMatch(/^the key 'rekey-1' presents was replaced on device 'rekey-1' \(rekey\) at .*; it is refused under any id$/);
    expect(await connect("rekey-1", newKey, null)).toHaveProperty("client");
  });
});

describe("groups", () => {
  it("selects for a rollout only the groups the operator assigned, never those a device claims", async () => {
    const claimer = new SimulatedDevice("claims-prod", serverKey.publicKey, ["prod"], { enrollmentSecret: TEST_ENROLLMENT_SECRET });
    const member = new SimulatedDevice("in-prod", serverKey.publicKey, [], { enrollmentSecret: TEST_ENROLLMENT_SECRET });
    for (const device of [claimer, member]) {
      await device.connect(server.mqttPort);
      devices.push(device);
    }
    await until(async () => (await api("devices/claims-prod")).json.device.reportedGroups.includes("prod"), "the claim to be reported");
    expect((await api("devices/claims-prod")).json.device.groups).toEqual([]);
    const none = await api("rollouts", { ref: REF, select: { groups: ["prod"] }, waves: "100%" });
    expect(none.status).toBe(400);
    expect(none.json.error.message).toBe("the selector matches no accepted device");
    expect((await cli("groups", "in-prod", "--set", "prod")).stdout).toBe("in-prod: groups prod; reported (none)");
    const { json } = await api("rollouts", { ref: REF, select: { groups: ["prod"] }, waves: "100%", waveDelay: "0s", waveTimeout: "30s" });
    expect(json.rollout.devices.map((m: { deviceId: string }) => m.deviceId)).toEqual(["in-prod"]);
    // Adopting what a device reports is the operator's act, once.
    expect((await cli("groups", "claims-prod", "--adopt-reported")).stdout).toBe("claims-prod: groups prod; reported prod");
  });
});
