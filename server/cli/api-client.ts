/** The admin API as the CLI uses it: server URL, bearer token and the server's CA from flags or environment. */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { AptOstreeError, UsageError } from "../../shared/errors.ts";
import { explainTlsFailure, TlsError } from "../../shared/tls/describe-failure.ts";
import { SERVE_DEFAULTS } from "../config/settings.ts";

export const DEFAULT_SERVER_URL = "https://127.0.0.1:8080";

export const API_CLIENT_OPTIONS = {
  server: { type: "string", valueName: "URL", description: `Server base URL (env APT_OSTREE_SERVER; default ${DEFAULT_SERVER_URL})` },
  ca: { type: "string", valueName: "FILE", description: "CA certificate an https:// server must chain to (env APT_OSTREE_CA; default DATA/tls/ca.pem when it exists, DATA being APT_OSTREE_DATA or the serve default; else this machine's CAs)" },
  "token-file": { type: "string", valueName: "FILE", description: "File holding the admin token (default: env APT_OSTREE_ADMIN_TOKEN)" },
  json: { type: "boolean", description: "Print the API's JSON answer" },
} as const;

export class ApiRequestError extends AptOstreeError {
  constructor(status: number, code: string, message: string) {
    super(code, `server answered ${status}: ${message}`);
  }
}

export interface ApiClient {
  call(method: "GET" | "POST" | "DELETE", path: string, body?: unknown): Promise<any>;
}

/** The CA to trust: --ca, APT_OSTREE_CA, or serve's own DATA/tls/ca.pem on this machine; null for the system's CAs. */
export async function apiCaFile(options: { ca?: string }, env: NodeJS.ProcessEnv): Promise<string | null> {
  const given = options.ca ?? env.APT_OSTREE_CA;
  if (given !== undefined) return given;
  const serveCa = join(env.APT_OSTREE_DATA ?? SERVE_DEFAULTS.data, "tls", "ca.pem");
  return (await stat(serveCa).catch(() => null)) ? serveCa : null;
}

/** fetch for `base`: with a CA, undici's (loaded only then) with a pool that trusts that CA alone. */
async function fetchFor(base: string, caFile: string | null): Promise<typeof fetch> {
  if (!base.startsWith("https://") || caFile === null) return fetch;
  const ca = await readFile(caFile, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new TlsError(`cannot read the CA certificate ${caFile}: ${error.code ?? error.message} (pass --ca FILE, the ca.pem serve prints, or set APT_OSTREE_CA)`, error);
  });
  const { Agent, fetch: undiciFetch } = await import("undici");
  const dispatcher = new Agent({ connect: { ca } });
  return ((url: string, init: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher })) as unknown as typeof fetch;
}

export async function apiClient(options: { server?: string; "token-file"?: string; ca?: string }, env: NodeJS.ProcessEnv): Promise<ApiClient> {
  const base = (options.server ?? env.APT_OSTREE_SERVER ?? DEFAULT_SERVER_URL).replace(/\/+$/, "");
  const token = options["token-file"] ? (await readFile(options["token-file"], "utf8")).trim() : env.APT_OSTREE_ADMIN_TOKEN;
  if (!token) throw new UsageError("no admin token: set APT_OSTREE_ADMIN_TOKEN or pass --token-file (serve keeps a generated one in DATA/admin-token)");
  const caFile = await apiCaFile(options, env);
  const fetch = await fetchFor(base, caFile);
  return {
    async call(method, path, body) {
      let res: Response;
      try {
        res = await fetch(`${base}/api/v1/${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (error) {
        const cause = (error as Error).cause instanceof Error ? ((error as Error).cause as Error) : (error as Error);
        const tls = explainTlsFailure(cause, base, caFile ? `the CA in ${caFile}` : "a CA this machine trusts");
        if (tls instanceof TlsError) throw new TlsError(`${tls.message}${caFile ? "" : "; pass --ca FILE (the ca.pem serve prints) or set APT_OSTREE_CA"}`, cause);
        throw new AptOstreeError("E_SERVER_UNREACHABLE", `cannot reach ${base}: ${cause.message}`);
      }
      const answer = await res.json().catch(() => ({}));
      if (!res.ok) throw new ApiRequestError(res.status, answer?.error?.code ?? "E_API", answer?.error?.message ?? res.statusText);
      return answer;
    },
  };
}
