/**
 * Ticks are coalesced (issue 18, finding 4): a thousand triggers — a flood of reconnects or
 * reports — cost at most the tick running and one more, never a queue of a thousand. That two
 * never overlap is coalesce.test.ts's.
 */
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { RolloutEngine } from "../../../server/fleet/rollouts.ts";
import { SqliteFleetStore } from "../../../server/fleet/store-sqlite.ts";
import { Metrics } from "../../../server/http/metrics.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let store: SqliteFleetStore;

beforeEach(async () => {
  dir = await makeTempDir("rollout-tick");
  store = new SqliteFleetStore(join(dir, "fleet.db"));
});
afterEach(async () => {
  await store.close();
  await removeTree(dir);
});

describe("rollout ticks", () => {
  it("runs a thousand tick requests as at most two ticks", async () => {
    const metrics = new Metrics();
    const engine = new RolloutEngine({ store, repo: dir, key: null, publish: async () => undefined, prefix: "apt-ostree/", log: silentLogger(), metrics });
    // Its first tick takes over (re-publishes what is due); each tick after starts by listing the running rollouts.
    await engine.resume();
    const spy = vi.spyOn(store, "listRollouts");
    await Promise.all(Array.from({ length: 1000 }, () => engine.tick()));
    expect(spy.mock.calls.length).toBeLessThanOrEqual(2);
    expect(metrics.render()).toMatch(/^aptostree_rollout_tick_requests_total 1001$/m);
    expect(metrics.render()).toMatch(/^aptostree_rollout_ticks_total [23]$/m);
  });

  it("reads no device list on a tick", async () => {
    const engine = new RolloutEngine({ store, repo: dir, key: null, publish: async () => undefined, prefix: "apt-ostree/", log: silentLogger() });
    const listDevices = vi.spyOn(store, "listDevices");
    await engine.tick();
    expect(listDevices).not.toHaveBeenCalled();
  });
});
