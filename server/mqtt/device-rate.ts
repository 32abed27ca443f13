/**
 * A budget per device for what costs the server work and writes: connections, reports, online
 * flags, hellos. A token bucket: `burst` tokens, refilled at `perMinute`; a message finding the
 * bucket empty is refused before anything is read or written for it. Buckets exist only for
 * known devices (callers charge after the registry lookup) and are forgotten once full again.
 */
import type { Logger } from "../../shared/log.ts";
import type { Metrics } from "../http/metrics.ts";

export interface DeviceRateOptions {
  burst: number;
  perMinute: number;
  /** Milliseconds (the server's clock; a step back refills nothing). */
  now?: () => number;
}

/** `refused` is the first refusal since the device was last within its budget (log it); `refused-again` the ones after. */
export type RateDecision = "ok" | "refused" | "refused-again";

interface Bucket {
  tokens: number;
  at: number;
  refusing: boolean;
}

/** Full buckets are swept once the map holds more than this (and twice what the last sweep left). */
const SWEEP_FLOOR = 1024;

export class DeviceRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly now: () => number;
  private sweepAt = SWEEP_FLOOR;

  constructor(private readonly options: DeviceRateOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  /** Takes one token from the device's bucket. */
  take(deviceId: string): RateDecision {
    const now = this.now();
    if (this.buckets.size >= this.sweepAt) this.sweep(now);
    const bucket = this.refilled(this.buckets.get(deviceId), now);
    this.buckets.set(deviceId, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      bucket.refusing = false;
      return "ok";
    }
    const first = !bucket.refusing;
    bucket.refusing = true;
    return first ? "refused" : "refused-again";
  }

  forget(deviceId: string): void {
    this.buckets.delete(deviceId);
  }

  /** Devices holding a bucket (full ones are swept from time to time). */
  get size(): number {
    return this.buckets.size;
  }

  private refilled(bucket: Bucket | undefined, now: number): Bucket {
    if (!bucket) return { tokens: this.options.burst, at: now, refusing: false };
    const gained = (Math.max(0, now - bucket.at) * this.options.perMinute) / 60_000;
    return { tokens: Math.min(this.options.burst, bucket.tokens + gained), at: now, refusing: bucket.refusing };
  }

  private sweep(now: number): void {
    for (const [id, bucket] of this.buckets) {
      if (this.refilled(bucket, now).tokens >= this.options.burst) this.buckets.delete(id);
    }
    this.sweepAt = Math.max(SWEEP_FLOOR, 2 * this.buckets.size);
  }
}

/** Says whether a device may go on; counts (`aptostree_mqtt_rate_limited_total{kind}`) and logs when not. */
export type DeviceBudget = (deviceId: string, kind: string) => boolean;

export function deviceBudget(limiter: DeviceRateLimiter, metrics: Metrics, log: Logger): DeviceBudget {
  const limited = metrics.counter("aptostree_mqtt_rate_limited_total", "Device connections and messages refused over the device's budget (limits.deviceMessageBurst, deviceMessagesPerMinute), by kind");
  return (deviceId, kind) => {
    const decision = limiter.take(deviceId);
    if (decision === "ok") return true;
    limited(1, { kind });
    // Once per episode: a flood of refusals is a count, not a flood of log lines.
    if (decision === "refused") log.warn({ event: "mqtt.device.rate-limited", deviceId, kind }, `${deviceId} is over its message budget; what it sends is dropped until it slows down`);
    return false;
  };
}
