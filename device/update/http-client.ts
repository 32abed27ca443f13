/**
 * undici's `request` on its own connection pool, behind a module of our own that the agent
 * reaches only through `import()` (load-http-client.ts), so the idle agent never loads undici.
 *
 * It imports undici's Agent and request API by file, not the package index: the index also loads
 * fetch, WebSocket, the cache and mock layers and their built-ins (zlib, worker_threads,
 * perf_hooks), which doubled the time an update waited for its HTTP client (~70 ms against
 * ~40 ms bundled, docs/agent.md). undici 6 has no exports map, so these paths are its published
 * files; the package is pinned, and every download test goes through them.
 */
import "./wasm-baseline-only.ts";
import type { Dispatcher } from "undici";
import Agent from "undici/lib/dispatcher/agent.js";
import dispatchRequest from "undici/lib/api/api-request.js";

export type RequestOptions = Omit<Dispatcher.RequestOptions, "origin" | "path" | "method"> & {
  method?: Dispatcher.HttpMethod;
  /** Another pool (tests); the agent's own otherwise. */
  dispatcher?: Dispatcher;
};

const pool = new Agent();

/** undici's `request(url, options)`, with what the package index adds: the URL split into origin and path. */
export function request(url: string, options: RequestOptions = {}): Promise<Dispatcher.ResponseData> {
  const { dispatcher = pool, ...rest } = options;
  const target = new URL(url);
  return dispatchRequest.call(dispatcher, { ...rest, origin: target.origin, path: `${target.pathname}${target.search}`, method: rest.method ?? "GET" });
}
