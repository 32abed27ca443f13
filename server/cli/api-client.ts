/** The admin API as the CLI uses it: server URL and bearer token from flags or environment. */
import { readFile } from "node:fs/promises";
import { AptOstreeError, UsageError } from "../../shared/errors.ts";

export const API_CLIENT_OPTIONS = {
  server: { type: "string", valueName: "URL", description: "Server base URL (env APT_OSTREE_SERVER; default http://127.0.0.1:8080)" },
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

export async function apiClient(options: { server?: string; "token-file"?: string }, env: NodeJS.ProcessEnv): Promise<ApiClient> {
  const base = (options.server ?? env.APT_OSTREE_SERVER ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
  const token = options["token-file"] ? (await readFile(options["token-file"], "utf8")).trim() : env.APT_OSTREE_ADMIN_TOKEN;
  if (!token) throw new UsageError("no admin token: set APT_OSTREE_ADMIN_TOKEN or pass --token-file (serve keeps a generated one in DATA/admin-token)");
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
        throw new AptOstreeError("E_SERVER_UNREACHABLE", `cannot reach ${base}: ${(error as Error).cause instanceof Error ? ((error as Error).cause as Error).message : (error as Error).message}`);
      }
      const answer = await res.json().catch(() => ({}));
      if (!res.ok) throw new ApiRequestError(res.status, answer?.error?.code ?? "E_API", answer?.error?.message ?? res.statusText);
      return answer;
    },
  };
}
