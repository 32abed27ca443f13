/** The channel manifest a ref's channel publishes (`<server>/repo/channels/<channel>/<ref>.json`), fetched with undici. */
import { AptOstreeError } from "../../shared/errors.ts";
import { manifestPath } from "../../shared/wire/manifest.ts";
import { loadHttpClient } from "./load-http-client.ts";

export type ChannelFetchErrorCode =
  | "E_CHANNEL_FETCH"
  /** Longer than `maxBytes` (announced or sent). */
  | "E_CHANNEL_TOO_LARGE"
  /** Headers and body took longer than `timeoutMs`. */
  | "E_CHANNEL_TIMEOUT";

export class ChannelFetchError extends AptOstreeError {
  declare readonly code: ChannelFetchErrorCode;
  constructor(code: ChannelFetchErrorCode, message: string, cause?: unknown) {
    super(code, message, { cause });
  }
}

export interface ChannelFetchLimits {
  /** The longest manifest accepted, in bytes. Default 1 MiB: one with many deltas is a few KiB. */
  maxBytes: number;
  /** The whole fetch, headers and body, in milliseconds. Default 30 s. */
  timeoutMs: number;
}

export const CHANNEL_FETCH_LIMITS: ChannelFetchLimits = { maxBytes: 1024 * 1024, timeoutMs: 30_000 };

export function repoUrl(server: string): string {
  return `${server.replace(/\/$/, "")}/repo`;
}

/**
 * The signed manifest as JSON (not yet verified: the caller verifies it against the pinned keys).
 * A server that sends more than `maxBytes` or takes longer than `timeoutMs` is cut off and
 * refused, so neither a hostile server nor one on the plain-HTTP path can hold the agent's poll
 * or fill its memory.
 */
export async function fetchChannelManifest(server: string, channel: string, ref: string, limits: Partial<ChannelFetchLimits> = {}): Promise<unknown> {
  const { maxBytes, timeoutMs } = { ...CHANNEL_FETCH_LIMITS, ...limits };
  const url = `${repoUrl(server)}/${manifestPath(channel, ref)}`;
  const { request } = await loadHttpClient();
  // One deadline for headers and body: undici's own timeouts restart on every byte.
  const abort = new AbortController();
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    abort.abort();
  }, timeoutMs);
  const tooSlow = (cause: unknown) => new ChannelFetchError("E_CHANNEL_TIMEOUT", `GET ${url}: no complete answer within ${timeoutMs / 1000} s; refusing it`, cause);
  try {
    let response;
    try {
      response = await request(url, { method: "GET", signal: abort.signal });
    } catch (error) {
      if (timedOut) throw tooSlow(error);
      throw new ChannelFetchError("E_CHANNEL_FETCH", `cannot reach ${url}: ${(error as Error).message}`, error);
    }
    // Reading below gets the body's errors; this keeps the abort of a refused body from being thrown as uncaught.
    response.body.on("error", () => undefined);
    if (response.statusCode === 404) {
      abort.abort();
      throw new ChannelFetchError("E_CHANNEL_FETCH", `channel ${channel} publishes nothing for ${ref} (${url}: 404)`);
    }
    if (response.statusCode !== 200) {
      abort.abort();
      throw new ChannelFetchError("E_CHANNEL_FETCH", `GET ${url}: HTTP ${response.statusCode}`);
    }
    const tooLarge = (what: string) => new ChannelFetchError("E_CHANNEL_TOO_LARGE", `GET ${url}: ${what}, more than the ${maxBytes} bytes a channel manifest may have; refusing it`);
    const length = response.headers["content-length"];
    if (typeof length === "string" && /^\d+$/.test(length) && Number(length) > maxBytes) {
      abort.abort();
      throw tooLarge(`Content-Length ${length}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of response.body) {
        size += (chunk as Buffer).length;
        if (size > maxBytes) {
          abort.abort();
          throw tooLarge(`the body goes on past ${maxBytes} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
    } catch (error) {
      if (error instanceof ChannelFetchError) throw error;
      if (timedOut) throw tooSlow(error);
      throw new ChannelFetchError("E_CHANNEL_FETCH", `GET ${url}: ${(error as Error).message}`, error);
    }
    try {
      return JSON.parse(Buffer.concat(chunks, size).toString("utf8"));
    } catch (error) {
      throw new ChannelFetchError("E_CHANNEL_FETCH", `${url} is not JSON`, error);
    }
  } finally {
    clearTimeout(deadline);
  }
}
