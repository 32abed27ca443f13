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
import { readFileSync } from "node:fs";
import type { Dispatcher } from "undici";
import Agent from "undici/lib/dispatcher/agent.js";
import dispatchRequest from "undici/lib/api/api-request.js";
import { explainTlsFailure, TlsError } from "../../shared/tls/describe-failure.ts";

export type RequestOptions = Omit<Dispatcher.RequestOptions, "origin" | "path" | "method"> & {
  method?: Dispatcher.HttpMethod;
  /** Another pool (tests); the agent's own otherwise. */
  dispatcher?: Dispatcher;
  /**
   * PEM file of the one CA an https:// server's certificate must chain to (the agent's caFile):
   * Node's bundled CAs are then not trusted. Unused for http://; null or absent: Node's CAs.
   */
  caFile?: string | null;
};

const pool = new Agent();
/** One pool per CA file, made at its first https:// request; the file is read then. */
const tlsPools = new Map<string, Agent>();

function poolFor(target: URL, caFile: string | null | undefined): Dispatcher {
  if (target.protocol !== "https:" || !caFile) return pool;
  let tlsPool = tlsPools.get(caFile);
  if (!tlsPool) {
    let ca: string;
    try {
      ca = readFileSync(caFile, "utf8");
    } catch (error) {
      throw new TlsError(`cannot read the CA certificate ${caFile} (caFile) that ${target.origin} must be signed by: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}; put the fleet's CA there (image build --ca) or point caFile at it`, error);
    }
    // undici checks the certificate against the host name in the URL (servername for DNS names, IP SANs for addresses).
    tlsPool = new Agent({ connect: { ca } });
    tlsPools.set(caFile, tlsPool);
  }
  return tlsPool;
}

/** undici's `request(url, options)`, with what the package index adds: the URL split into origin and path. */
export async function request(url: string, options: RequestOptions = {}): Promise<Dispatcher.ResponseData> {
  const { dispatcher, caFile, ...rest } = options;
  const target = new URL(url);
  try {
    return await dispatchRequest.call(dispatcher ?? poolFor(target, caFile), { ...rest, origin: target.origin, path: `${target.pathname}${target.search}`, method: rest.method ?? "GET" });
  } catch (error) {
    throw explainTlsFailure(error, target.origin, caFile ? `the CA in ${caFile}` : "a CA this machine trusts");
  }
}
