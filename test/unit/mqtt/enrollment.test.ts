/**
 * Registry flood (issue 18, finding 3): unknown devices wait for enrollment up to
 * `limits.maxPendingDevices`; beyond it a new id is refused, counted, and nothing is stored.
 */
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { deviceTopic } from "../../../shared/wire/topics.ts";
import { DEFAULT_LIMITS } from "../../../server/config/limits.ts";
import { SqliteFleetStore } from "../../../server/fleet/store-sqlite.ts";
import { Metrics } from "../../../server/http/metrics.ts";
import { authenticateDevice } from "../../../server/mqtt/auth.ts";
import { createEnrollment } from "../../../server/mqtt/enrollment.ts";
import { createIngest } from "../../../server/mqtt/ingest.ts";
import { metricValue } from "../../helpers/metric-value.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const key = generateKeyPair();
const now = new Date();
let dir: string;
let store: SqliteFleetStore;
let metrics: Metrics;

const SECRET = new Uint8Array(Buffer.from("fleet-enrollment-secret-0123456789"));
const connectWith = (id: string, deviceKey: typeof key, enroll: ReturnType<typeof createEnrollment>, secret: Uint8Array | null = null) =>
  authenticateDevice({ clientId: id, username: id, password: Buffer.from(createDeviceToken(id, deviceKey, now, undefined, secret)) }, now, enroll);
const connect = (id: string, enroll: ReturnType<typeof createEnrollment>) => connectWith(id, key, enroll);

beforeEach(async () => {
  dir = await makeTempDir("enrollment");
  store = new SqliteFleetStore(join(dir, "fleet.db"));
  metrics = new Metrics();
});
afterEach(async () => {
  await store.close();
  await removeTree(dir);
});

describe("pending enrollments", () => {
  it(`refuses the ${DEFAULT_LIMITS.maxPendingDevices + 1}st unknown device with 'server unavailable', counts it and stores nothing`, async () => {
    const enroll = createEnrollment({ store, metrics, autoAcceptSecret: null, maxPendingDevices: DEFAULT_LIMITS.maxPendingDevices, maxDevices: DEFAULT_LIMITS.maxDevices });
    for (let i = 0; i < DEFAULT_LIMITS.maxPendingDevices; i++) expect(await connect(`dev-${i}`, enroll)).toMatchObject({ ok: false, returnCode: 5 });
    const refused = await connect("one-too-many", enroll);
    expect(refused).toMatchObject({ ok: false, returnCode: 3 });
    expect(refused.ok === false && refused.reason).toMatch(/1000 devices already wait for enrollment \(limits.maxPendingDevices\)/);
    expect(await store.getDevice("one-too-many")).toBeNull();
    expect(await store.countDevices("pending")).toBe(DEFAULT_LIMITS.maxPendingDevices);
    expect(metricValue(metrics, "aptostree_devices_enrollment_refused_total", { reason: "pending-full" })).toBe(1);
    // A device already pending is not a new one: it is told to wait for acceptance, as before.
    expect(await connect("dev-0", enroll)).toMatchObject({ ok: false, returnCode: 5 });
  });

  it("makes room when a pending device is rejected or deleted", async () => {
    const enroll = createEnrollment({ store, metrics, autoAcceptSecret: null, maxPendingDevices: 2, maxDevices: 100 });
    await connect("a", enroll);
    await connect("b", enroll);
    expect(await connect("c", enroll)).toMatchObject({ returnCode: 3 });
    await store.rejectDevice("a", now);
    expect(await connect("c", enroll)).toMatchObject({ returnCode: 5 });
    expect(await connect("d", enroll)).toMatchObject({ returnCode: 3 });
    await store.deleteDevice("b");
    expect(await connect("d", enroll)).toMatchObject({ returnCode: 5 });
    expect(await connect("a", enroll)).toMatchObject({ returnCode: 5, reason: "device 'a' is rejected" });
  });

  it("does not cap devices accepted automatically by the pending cap, only by the registry's size", async () => {
    const enroll = createEnrollment({ store, metrics, autoAcceptSecret: SECRET, maxPendingDevices: 1, maxDevices: 3 });
    const connect = (id: string, e: typeof enroll) => connectWith(id, key, e, SECRET);
    expect([await connect("a", enroll), await connect("b", enroll), await connect("c", enroll)]).toEqual([{ ok: true, deviceId: "a" }, { ok: true, deviceId: "b" }, { ok: true, deviceId: "c" }]);
    expect(await connect("d", enroll)).toMatchObject({ ok: false, returnCode: 3 });
    expect(await store.getDevice("d")).toBeNull();
    expect(metricValue(metrics, "aptostree_devices_enrollment_refused_total", { reason: "registry-full" })).toBe(1);
    expect(await connect("a", enroll)).toMatchObject({ ok: true });
  });

  it("refuses a hello beyond the cap through an external broker too", async () => {
    const ingest = createIngest({ store, prefix: "apt-ostree/", log: silentLogger(), metrics, autoAcceptSecret: null, now: () => now, limits: { ...DEFAULT_LIMITS, maxPendingDevices: 2 } });
    for (const id of ["a", "b", "c"]) await ingest(deviceTopic("apt-ostree/", id, "hello"), Buffer.from(createDeviceToken(id, key, now)), null);
    expect((await store.listDevices()).map((d) => d.id)).toEqual(["a", "b"]);
    expect(metricValue(metrics, "aptostree_mqtt_hellos_total", { outcome: "pending" })).toBe(2);
    expect(metricValue(metrics, "aptostree_mqtt_hellos_total", { outcome: "pending-full" })).toBe(1);
    expect(metricValue(metrics, "aptostree_devices_enrollment_refused_total", { reason: "pending-full" })).toBe(1);
  });
});

describe("enrollment an attacker cannot win", () => {
  const options = (secret: Uint8Array | null) => ({ store, metrics, autoAcceptSecret: secret, maxPendingDevices: 10, maxDevices: 100 });
  const b64 = (k: typeof key) => Buffer.from(k.publicKey).toString("base64");

  it("refuses a valid proof for an id another key enrolled between the lookup and the insert, and accepts no one", async () => {
    const attacker = generateKeyPair();
    await store.enrollPending("raced", b64(attacker), now);
    // The lookup ran before the attacker's insert landed (another connection, another instance).
    const racing: SqliteFleetStore = Object.assign(Object.create(store), { getDevice: async () => null });
    const enroll = createEnrollment({ ...options(SECRET), store: racing });
    const proof = JSON.parse(Buffer.from(createDeviceToken("raced", key, now, undefined, SECRET).split(".")[0]!, "base64url").toString()).enrollment as string;
    expect(await enroll({ deviceId: "raced", publicKey: b64(key), proof }, now)).toMatchObject({ ok: false, reason: "key-mismatch" });
    expect(await store.getDevice("raced")).toMatchObject({ enrollment: "pending", publicKey: b64(attacker) });
  });

  it("accepts a preauthorized id at its first connection with exactly its key, and refuses any other key without storing it", async () => {
    const enroll = createEnrollment(options(null));
    const other = generateKeyPair();
    await store.preauthorizeDevice("pre-1", b64(key), ["lab"], now);
    const refused = await connectWith("pre-1", other, enroll);
    expect(refused).toMatchObject({ ok: false, returnCode: 4 });
    expect(refused.ok === false && refused.reason).toBe("'pre-1' is preauthorized with another key; the key it presents is refused (preauthorize it again to change the key)");
    expect(metricValue(metrics, "aptostree_devices_enrollment_refused_total", { reason: "preauthorized-key-mismatch" })).toBe(1);
    expect(await store.getDevice("pre-1")).toMatchObject({ enrollment: "preauthorized", publicKey: b64(key), groups: ["lab"] });
    expect(await connectWith("pre-1", key, enroll)).toEqual({ ok: true, deviceId: "pre-1" });
    expect(await store.getDevice("pre-1")).toMatchObject({ enrollment: "accepted", groups: ["lab"] });
  });

  const proofCases: Array<[string, Uint8Array | null, "missing" | "invalid"]> = [
    ["no proof", null, "missing"],
    ["a proof under another secret", new Uint8Array(Buffer.from("some-other-secret-0123456789")), "invalid"],
  ];
  it.each(proofCases)("leaves a device with %s pending under auto-accept, with the reason", async (_name, secret, outcome) => {
    const enroll = createEnrollment(options(SECRET));
    const decision = await connectWith("newcomer", key, enroll, secret);
    expect(decision).toMatchObject({ ok: false, returnCode: 5 });
    expect(decision.ok === false && decision.reason).toMatch(outcome === "missing" ? /carries no enrollment proof/ : /does not match the fleet enrollment secret/);
    expect((await store.getDevice("newcomer"))?.enrollment).toBe("pending");
    expect(metricValue(metrics, "aptostree_devices_enrollment_proofs_total", { outcome })).toBe(1);
  });

  it("auto-accepts a pending device once it proves the secret, and never a rejected one", async () => {
    const enroll = createEnrollment(options(SECRET));
    await connectWith("late", key, enroll);
    expect(await connectWith("late", key, enroll, SECRET)).toEqual({ ok: true, deviceId: "late" });
    await connectWith("barred", key, createEnrollment(options(null)));
    await store.rejectDevice("barred", now);
    expect(await connectWith("barred", key, enroll, SECRET)).toMatchObject({ ok: false, returnCode: 5, reason: "device 'barred' is rejected" });
  });

  it("refuses a proof made for another key (a proof read off the wire admits no one else)", async () => {
    const enroll = createEnrollment(options(SECRET));
    const victim = generateKeyPair();
    const stolen = createDeviceToken("victim", victim, now, undefined, SECRET);
    const proof = JSON.parse(Buffer.from(stolen.split(".")[0]!, "base64url").toString()).enrollment as string;
    const decision = await enroll({ deviceId: "victim", publicKey: b64(key), proof }, now);
    expect(decision).toMatchObject({ ok: true, proof: "invalid", device: { enrollment: "pending" } });
  });

  it("refuses a revoked device with any key, and its key under any id", async () => {
    const enroll = createEnrollment(options(SECRET));
    expect(await connectWith("gone", key, enroll, SECRET)).toMatchObject({ ok: true });
    await store.revokeDevice("gone", now);
    const again = await connectWith("gone", generateKeyPair(), enroll, SECRET);
    expect(again.ok === false && again.reason).toMatch(/device 'gone' is revoked; 'apt-ostree-server device rekey gone --key PUB' admits it again/);
    const elsewhere = await connectWith("gone-2", key, enroll, SECRET);
    expect(elsewhere).toMatchObject({ ok: false, returnCode: 5 });
    expect(elsewhere.ok === false && elsewhere.reason).toMatch(/the key 'gone-2' presents was revoked with device 'gone' at .*; it is refused under any id/);
    expect(await store.getDevice("gone-2")).toBeNull();
    expect(metricValue(metrics, "aptostree_devices_enrollment_refused_total", { reason: "revoked" })).toBe(1);
    expect(metricValue(metrics, "aptostree_devices_enrollment_refused_total", { reason: "revoked-key" })).toBe(1);
  });
});
