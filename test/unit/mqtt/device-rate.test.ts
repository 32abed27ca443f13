import { describe, expect, it } from "vitest";
import { DeviceRateLimiter } from "../../../server/mqtt/device-rate.ts";

describe("per-device message budget", () => {
  it("allows a burst, then one message per refill interval, and says which refusal is the first", () => {
    let now = 0;
    const limiter = new DeviceRateLimiter({ burst: 3, perMinute: 60, now: () => now });
    expect(Array.from({ length: 5 }, () => limiter.take("dev-1"))).toEqual(["ok", "ok", "ok", "refused", "refused-again"]);
    now += 1000;
    expect([limiter.take("dev-1"), limiter.take("dev-1")]).toEqual(["ok", "refused"]);
    now += 60_000;
    expect(Array.from({ length: 4 }, () => limiter.take("dev-1"))).toEqual(["ok", "ok", "ok", "refused"]);
  });

  it("keeps one budget per device", () => {
    const limiter = new DeviceRateLimiter({ burst: 1, perMinute: 1, now: () => 0 });
    expect([limiter.take("dev-1"), limiter.take("dev-2"), limiter.take("dev-1")]).toEqual(["ok", "ok", "refused"]);
  });

  it("forgets devices whose budget is full again, so the map stays the size of the busy ones", () => {
    let now = 0;
    const limiter = new DeviceRateLimiter({ burst: 2, perMinute: 60, now: () => now });
    for (let i = 0; i < 5000; i++) limiter.take(`dev-${i}`);
    now += 10_000;
    limiter.take("busy");
    limiter.take("busy");
    for (let i = 0; i < 5000; i++) limiter.take(`later-${i}`);
    // The 5000 refilled buckets were swept on the way: busy and the 5000 later ones remain.
    expect(limiter.size).toBe(5001);
    expect(limiter.take("busy")).toBe("refused");
  });
});
