import { TEST_ADMIN_TOKEN } from "./server-settings.ts";

/** Calls the admin API of a test server: GET without a body, POST with one (`fetcher`: one that trusts a TLS server's CA). */
export function adminApi(baseUrl: () => string, fetcher: () => typeof fetch = () => fetch) {
  return async (path: string, body?: unknown): Promise<{ status: number; json: any }> => {
    const res = await fetcher()(`${baseUrl()}/api/v1/${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
  };
}
