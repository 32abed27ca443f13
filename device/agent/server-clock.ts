/**
 * The server's time as this device estimates it, for stamping its tokens (shared/wire/device-token.ts):
 * a device with no battery-backed clock and no NTP may run hours or days off, and the server
 * refuses a token issued more than 5 minutes ahead of its clock or expired by it. When the broker
 * refuses the token, the agent reads the `Date` header of the server's `/healthz` over HTTPS (the
 * pinned CA, so no one else can set it) and stamps later tokens with its own time plus the
 * difference. Only tokens use it: every expiry the device checks (manifests, roots, certificates)
 * stays on its own clock. Never learned from a plain http:// server, where anyone on the path
 * could hand the device a time to mint tokens for.
 */
import type { Logger } from "../../shared/log.ts";
import { loadHttpClient } from "../update/load-http-client.ts";

/** An offset below this is the Date header's one-second resolution and the round trip, not a wrong clock. */
const NEGLIGIBLE_MS = 2000;
const MEASURE_TIMEOUT_MS = 10_000;
/** At most one measurement this often: a broker that refuses over and over does not make the fleet hammer /healthz. */
export const MEASURE_INTERVAL_MS = 60_000;

export type ServerTimeFetch = (url: string) => Promise<{ date: string | undefined }>;

export class ServerClock {
  private offsetMs = 0;
  private measuring: Promise<void> | null = null;
  private lastMeasured = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly options: { server: string; log: Logger; fetchDate?: ServerTimeFetch; now?: () => number },
  ) {}

  /** The server's time now, as far as the device knows. */
  now(): Date {
    return new Date(this.localMs() + this.offsetMs);
  }

  /** The server's clock minus this device's, in seconds (0 until measured, or when negligible). */
  get offsetSeconds(): number {
    return Math.round(this.offsetMs / 1000);
  }

  /** Measures the offset again (one at a time, at most once a minute); a failure leaves the last offset and is logged. */
  measure(): Promise<void> {
    if (this.measuring) return this.measuring;
    // Monotonic: the wall clock is the very thing that may be stepped.
    if (performance.now() - this.lastMeasured < MEASURE_INTERVAL_MS) return Promise.resolve();
    this.lastMeasured = performance.now();
    this.measuring = this.measureOnce().finally(() => (this.measuring = null));
    return this.measuring;
  }

  private localMs(): number {
    return this.options.now?.() ?? Date.now();
  }

  private async measureOnce(): Promise<void> {
    const { server, log } = this.options;
    if (!server.startsWith("https://")) return;
    const started = this.localMs();
    let date: string | undefined;
    try {
      date = (await (this.options.fetchDate ?? fetchDate)(`${server.replace(/\/+$/, "")}/healthz`)).date;
    } catch (error) {
      log.warn({ event: "agent.clock.measure-failed", err: error }, `cannot read the server's time: ${(error as Error).message}`);
      return;
    }
    const ended = this.localMs();
    const serverMs = date === undefined ? Number.NaN : Date.parse(date);
    if (!Number.isFinite(serverMs)) {
      log.warn({ event: "agent.clock.measure-failed", date }, `the server's answer has no usable Date header (${date ?? "none"})`);
      return;
    }
    // Date is truncated to the second: its middle is half a second later.
    const offset = serverMs + 500 - (started + ended) / 2;
    const next = Math.abs(offset) < NEGLIGIBLE_MS ? 0 : Math.round(offset);
    if (next !== this.offsetMs) {
      const seconds = Math.round(next / 1000);
      log.warn(
        { event: "agent.clock.offset", offsetSeconds: seconds },
        next === 0 ? "this device's clock agrees with the server's again" : `this device's clock is ${Math.abs(seconds)} s ${seconds > 0 ? "behind" : "ahead of"} the server's: its tokens are stamped with the server's time (set the clock, or NTP, to fix it)`,
      );
    }
    this.offsetMs = next;
  }
}

async function fetchDate(url: string): Promise<{ date: string | undefined }> {
  const { request } = await loadHttpClient();
  const response = await request(url, { method: "GET", headersTimeout: MEASURE_TIMEOUT_MS, bodyTimeout: MEASURE_TIMEOUT_MS });
  await response.body.dump();
  const date = response.headers.date;
  return { date: typeof date === "string" ? date : undefined };
}
