/**
 * One device cannot load the server (issue 18, finding 4): saying "online" again writes and
 * wakes nothing, and what a device sends beyond its budget is refused before any write.
 */
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { signReport } from "../../../shared/wire/report.ts";
import { deviceTopic } from "../../../shared/wire/topics.ts";
import { DEFAULT_LIMITS } from "../../../server/config/limits.ts";
import { SqliteFleetStore } from "../../../server/fleet/store-sqlite.ts";
import { Metrics } from "../../../server/http/metrics.ts";
import { createIngest } from "../../../server/mqtt/ingest.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { metricValue } from "../../helpers/metric-value.ts";

const P = "apt-ostree/";
const BURST = 20;
const key = generateKeyPair();
let dir: string;
let store: SqliteFleetStore;
let metrics: Metrics;
let woken: string[];

function ingestWith(now = () => new Date()) {
  return createIngest({
    store, prefix: P, log: silentLogger(), metrics, autoAcceptSecret: null, now,
    limits: { ...DEFAULT_LIMITS, deviceMessageBurst: BURST, deviceMessagesPerMinute: 60 },
    onOnline: (id) => woken.push(id),
  });
}

beforeEach(async () => {
  dir = await makeTempDir("ingest-flood");
  store = new SqliteFleetStore(join(dir, "fleet.db"));
  metrics = new Metrics();
  woken = [];
  await store.enrollPending("dev-1", Buffer.from(key.publicKey).toString("base64"), new Date());
  await store.acceptDevice("dev-1", new Date());
});
afterEach(async () => {
  await store.close();
  await removeTree(dir);
});

describe("a device that floods", () => {
  it("publishing 'online' a thousand times writes once and wakes the rollouts once", async () => {
    const ingest = ingestWith();
    const writes = vi.spyOn(store, "setOnline");
    for (let i = 0; i < 1000; i++) await ingest(deviceTopic(P, "dev-1", "online"), Buffer.from("online"), "dev-1");
    expect(writes.mock.calls.length).toBeLessThanOrEqual(1);
    expect(woken).toEqual(["dev-1"]);
    expect((await store.deviceEvents("dev-1", 100)).filter((e) => e.kind === "online")).toHaveLength(1);
  });

  it("flipping online and offline a thousand times is cut at its budget, each refusal counted", async () => {
    const ingest = ingestWith();
    const writes = vi.spyOn(store, "setOnline");
    for (let i = 0; i < 1000; i++) await ingest(deviceTopic(P, "dev-1", "online"), Buffer.from(i % 2 === 0 ? "online" : "offline"), "dev-1");
    expect(writes.mock.calls.length).toBeLessThanOrEqual(BURST + 1);
    expect(woken.length).toBeLessThanOrEqual(BURST / 2 + 1);
    expect(metricValue(metrics, "aptostree_mqtt_rate_limited_total", { kind: "online" })).toBe(1000 - BURST);
  });

  it("sending a thousand valid reports stores its budget's worth and refuses the rest before verifying them", async () => {
    const ingest = ingestWith();
    const recorded = vi.spyOn(store, "recordReport");
    const sent = new Date().toISOString();
    for (let counter = 1; counter <= 1000; counter++) await ingest(deviceTopic(P, "dev-1", "state"), Buffer.from(signReport({ deviceId: "dev-1", counter, sent, state: "idle" }, key)), "dev-1");
    expect(recorded).toHaveBeenCalledTimes(BURST);
    expect(metricValue(metrics, "aptostree_mqtt_reports_total", { outcome: "accepted" })).toBe(BURST);
    expect(metricValue(metrics, "aptostree_mqtt_reports_total", { outcome: "rate-limited" })).toBe(1000 - BURST);
    expect(metricValue(metrics, "aptostree_mqtt_rate_limited_total", { kind: "state" })).toBe(1000 - BURST);
  });

  it("is heard again once its budget has refilled", async () => {
    let now = Date.now();
    const ingest = ingestWith(() => new Date(now));
    const report = (counter: number) => Buffer.from(signReport({ deviceId: "dev-1", counter, sent: new Date(now).toISOString(), state: "idle" }, key));
    for (let counter = 1; counter <= BURST + 5; counter++) await ingest(deviceTopic(P, "dev-1", "state"), report(counter), "dev-1");
    expect((await store.getDevice("dev-1"))!.lastCounter).toBe(BURST);
    now += 5_000;
    await ingest(deviceTopic(P, "dev-1", "state"), report(100), "dev-1");
    expect((await store.getDevice("dev-1"))!.lastCounter).toBe(100);
  });
});
