/**
 * A small document from the server (a channel manifest, a root version), fetched with undici
 * under two bounds: its size and one deadline for headers and body (undici's own timeouts
 * restart on every byte). A hostile server or one on the network path can neither hold the
 * agent nor fill its memory.
 */
import { AptOstreeError } from "../../shared/errors.ts";
import { loadHttpClient } from "./load-http-client.ts";

export type FetchErrorCode =
  | "E_CHANNEL_FETCH"
  /** Longer than `maxBytes` (announced or sent). */
  | "E_CHANNEL_TOO_LARGE"
  /** Headers and body took longer than `timeoutMs`. */
  | "E_CHANNEL_TIMEOUT";

export class ChannelFetchError extends AptOstreeError {
  declare readonly code: FetchErrorCode;
  constructor(code: FetchErrorCode, message: string, cause?: unknown) {
    super(code, message, { cause });
  }
}

export interface FetchLimits {
  /** The longest document accepted, in bytes. */
  maxBytes: number;
  /** The whole fetch, headers and body, in milliseconds. */
  timeoutMs: number;
}

/** The body of `url`, or null when the server answers 404; `what` names the document in errors. */
export async function fetchBounded(url: string, what: string, limits: FetchLimits): Promise<Buffer | null> {
  const { maxBytes, timeoutMs } = limits;
  const { request } = await loadHttpClient();
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
      return null;
    }
    if (response.statusCode !== 200) {
      abort.abort();
      throw new ChannelFetchError("E_CHANNEL_FETCH", `GET ${url}: HTTP ${response.statusCode}`);
    }
    const tooLarge = (detail: string) => new ChannelFetchError("E_CHANNEL_TOO_LARGE", `GET ${url}: ${detail}, more than the ${maxBytes} bytes ${what} may have; refusing it`);
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
    return Buffer.concat(chunks, size);
  } finally {
    clearTimeout(deadline);
  }
}
