/**
 * The one way the agent gets its HTTP client: undici (through http-client.ts) is loaded on first
 * use, so an idle agent never carries it (~11 MB resident). An accepted update starts the load
 * at once, so the first download does not wait for it.
 *
 * In the agent's bundle the client is its own file, dist/lib/http-client.cjs (device/bundle.ts
 * defines AGENT_HTTP_CLIENT to its path beside the bundle); once the agent named a directory for
 * it, that file is loaded with a V8 code cache kept there (code-cache.ts). Elsewhere (tests, the
 * CLI) the module is imported.
 */
import { join } from "node:path";
import { hasCodeCache, requireWithCodeCache, type CodeCacheLoad } from "./code-cache.ts";

type HttpClient = typeof import("./http-client.ts");

declare const AGENT_HTTP_CLIENT: string | undefined;

/** The bundled client's file when this code runs from the agent's bundle, else null. */
export function bundledHttpClient(): string | null {
  return typeof AGENT_HTTP_CLIENT === "string" ? join(__dirname, AGENT_HTTP_CLIENT) : null;
}

// Process-wide, as Node's own module cache is: the agent sets them once at start.
let codeCacheDir: string | null = null;
let caFile: string | null = null;
let loading: Promise<HttpClient> | null = null;
let codeCacheUse: CodeCacheLoad<HttpClient>["cache"] | null = null;

/** How the bundled client was loaded: "hit" (from its code cache), "miss", "rejected"; null when imported. */
export function httpClientCodeCache(): CodeCacheLoad<HttpClient>["cache"] | null {
  return codeCacheUse;
}

/**
 * Keeps the bundled client's code cache in `dir`: returns true when the cache for this build is
 * missing there, so the agent can have it written (`apt-ostreed --write-code-cache`).
 */
export async function useHttpClientCodeCache(dir: string): Promise<boolean> {
  codeCacheDir = dir;
  const file = bundledHttpClient();
  return file !== null && !(await hasCodeCache(file, dir));
}

/**
 * The CA every https:// request of this process must chain to (the agent's caFile); null:
 * Node's bundled CAs. Set once at start, before the first request; the file is read at the first
 * https:// request (so a device on http:// needs none).
 */
export function useTrustedCa(file: string | null): void {
  caFile = file;
}

export function trustedCaFile(): string | null {
  return caFile;
}

export function loadHttpClient(): Promise<HttpClient> {
  loading ??= load().catch((error: unknown) => {
    loading = null;
    throw error;
  });
  return loading;
}

/** The client, its requests trusting the CA set with useTrustedCa unless a request names its own. */
async function load(): Promise<HttpClient> {
  const client = await loadModule();
  return { ...client, request: (url, options = {}) => client.request(url, { caFile, ...options }) };
}

async function loadModule(): Promise<HttpClient> {
  const file = bundledHttpClient();
  if (file === null || codeCacheDir === null) return import("./http-client.ts");
  try {
    const loaded = await requireWithCodeCache<HttpClient>(file, codeCacheDir);
    codeCacheUse = loaded.cache;
    return loaded.exports;
  } catch {
    // A cache that cannot be used (an unreadable file) leaves the plain import.
    return import("./http-client.ts");
  }
}
