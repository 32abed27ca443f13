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

const connect = (id: string, enroll: ReturnType<typeof createEnrollment>) =>
  authenticateDevice({ clientId: id, username: id, password: Buffer.from(createDeviceToken(id, key, now)) }, now, enroll);

beforeEach(async () => {
  dir = await makeTempDir("enrollment");
  store = new SqliteFleetStore(join(dir, "fleet.db"));
  metrics = new Metrics();
});
afterEach(async () => {
  store.close();
  await removeTree(dir);
});

describe("pending enrollments", () => {
  it(`refuses the ${DEFAULT_LIMITS.maxPendingDevices + 1}st unknown device with 'server unavailable', counts it and stores nothing`, () => {
    const enroll = createEnrollment({ store, metrics, autoAccept: false, maxPendingDevices: DEFAULT_LIMITS.maxPendingDevices, maxDevices: DEFAULT_LIMITS.maxDevices });
    for (let i = 0; i < DEFAULT_LIMITS.maxPendingDevices; i++) expect(connect(`dev-${i}`, enroll)).toMatchObject({ ok: false, returnCode: 5 });
    const refused = connect("one-too-many", enroll);
    expect(refused).toMatchObject({ ok: false, returnCode: 3 });
    expect(refused.ok === false && refused.reason).toMatch(/1000 devices already wait for enrollment \(limits.maxPendingDevices\)/);
    expect(store.getDevice("one-too-many")).toBeNull();
    expect(store.countDevices("pending")).toBe(DEFAULT_LIMITS.maxPendingDevices);
    expect(metricValue(metrics, "aptostree_devices_enrollment_refused_total", { reason: "pending-full" })).toBe(1);
    // A device already pending is not a new one: it is told to wait for acceptance, as before.
    expect(connect("dev-0", enroll)).toMatchObject({ ok: false, returnCode: 5 });
  });

  it("makes room when a pending device is rejected or deleted", () => {
    const enroll = createEnrollment({ store, metrics, autoAccept: false, maxPendingDevices: 2, maxDevices: 100 });
    connect("a", enroll);
    connect("b", enroll);
    expect(connect("c", enroll)).toMatchObject({ returnCode: 3 });
    store.rejectDevice("a", now);
    expect(connect("c", enroll)).toMatchObject({ returnCode: 5 });
    expect(connect("d", enroll)).toMatchObject({ returnCode: 3 });
    store.deleteDevice("b");
    expect(connect("d", enroll)).toMatchObject({ returnCode: 5 });
    expect(connect("a", enroll)).toMatchObject({ returnCode: 5, reason: "device 'a' is rejected" });
  });

  it("does not cap devices accepted automatically by the pending cap, only by the registry's size", () => {
    const enroll = createEnrollment({ store, metrics, autoAccept: true, maxPendingDevices: 1, maxDevices: 3 });
    expect([connect("a", enroll), connect("b", enroll), connect("c", enroll)]).toEqual([{ ok: true, deviceId: "a" }, { ok: true, deviceId: "b" }, { ok: true, deviceId: "c" }]);
    expect(connect("d", enroll)).toMatchObject({ ok: false, returnCode: 3 });
    expect(store.getDevice("d")).toBeNull();
    expect(metricValue(metrics, "aptostree_devices_enrollment_refused_total", { reason: "registry-full" })).toBe(1);
    expect(connect("a", enroll)).toMatchObject({ ok: true });
  });

  it("refuses a hello beyond the cap through an external broker too", () => {
    const ingest = createIngest({ store, prefix: "apt-ostree/", log: silentLogger(), metrics, autoAccept: false, now: () => now, limits: { ...DEFAULT_LIMITS, maxPendingDevices: 2 } });
    for (const id of ["a", "b", "c"]) ingest(deviceTopic("apt-ostree/", id, "hello"), Buffer.from(createDeviceToken(id, key, now)), null);
    expect(store.listDevices().map((d) => d.id)).toEqual(["a", "b"]);
    expect(metricValue(metrics, "aptostree_mqtt_hellos_total", { outcome: "pending" })).toBe(2);
    expect(metricValue(metrics, "aptostree_mqtt_hellos_total", { outcome: "pending-full" })).toBe(1);
    expect(metricValue(metrics, "aptostree_devices_enrollment_refused_total", { reason: "pending-full" })).toBe(1);
  });
});
