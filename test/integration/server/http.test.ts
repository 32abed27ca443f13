import { request } from "node:http";
import { anyOf } from "../../../shared/trust/signers.ts";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { verifySignedManifest } from "../../../shared/verify/manifest.ts";
import { publish } from "../../../server/publish/publish.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { commitSyntheticImage } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { TEST_ADMIN_TOKEN, testServerSettings } from "../../helpers/server-settings.ts";

const REF = "test/bookworm/test-machine/test-image";
const TOKEN = TEST_ADMIN_TOKEN;
const key = generateKeyPair();
let dir: string;
let repo: string;
let server: RunningServer;
let base: string;
let commit: string;

/** A request with the path exactly as written (fetch would normalise `..`). */
function rawGet(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: server.httpPort, path, method: "GET", headers }, (res) => {
      let body = "";
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

beforeAll(async () => {
  dir = await makeTempDir("http");
  repo = join(dir, "repo");
  await initRepo(repo, "archive");
  commit = await commitSyntheticImage(repo, REF, dir, { version: "1", sequence: 1, payloadBytes: 200_000 });
  await publish({ repo, ref: REF, key, channel: "stable", deltaDepth: 3, expiresInSeconds: 86400, log: silentLogger() });
  server = await startServer(testServerSettings({ repo, data: join(dir, "data") }), silentLogger());
  base = `http://127.0.0.1:${server.httpPort}`;
});
afterAll(async () => {
  await server?.close();
  await removeTree(dir);
});

describe("serving the repo over HTTP", () => {
  it("answers /healthz", async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  it("lets the real ostree pull the published commit over HTTP", async () => {
    const client = join(dir, "client");
    await initRepo(client, "bare-user");
    await execa("ostree", ["remote", "add", `--repo=${client}`, "--no-gpg-verify", "origin", `${base}/repo`]);
    await execa("ostree", ["pull", `--repo=${client}`, "origin", REF]);
    expect((await execa("ostree", ["rev-parse", `--repo=${client}`, `origin:${REF}`])).stdout).toBe(commit);
  });

  it("serves the signed manifest as JSON that verifies", async () => {
    const res = await fetch(`${base}/repo/channels/stable/${REF}.json`);
    expect(res.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(verifySignedManifest(await res.text(), { signers: anyOf([key.publicKey]), now: new Date(), architecture: "amd64" }).commit).toBe(commit);
  });

  it("answers a Range request with 206 and exactly those bytes, so downloads can resume", async () => {
    const manifest = JSON.parse(await readFile(join(repo, `channels/stable/${REF}.json`), "utf8")).manifest;
    const file = manifest.deltas[0].files.at(-1);
    const whole = await readFile(join(repo, file.path));
    const res = await fetch(`${base}/repo/${file.path}`, { headers: { range: "bytes=100-" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe(`bytes 100-${whole.length - 1}/${whole.length}`);
    expect(Buffer.from(await res.arrayBuffer())).toEqual(whole.subarray(100));
    const suffix = await fetch(`${base}/repo/${file.path}`, { headers: { range: "bytes=-10" } });
    expect(Buffer.from(await suffix.arrayBuffer())).toEqual(whole.subarray(-10));
  });

  it("answers an unsatisfiable range with 416", async () => {
    const size = (await stat(join(repo, "config"))).size;
    const res = await fetch(`${base}/repo/config`, { headers: { range: `bytes=${size + 10}-` } });
    expect(res.status).toBe(416);
    expect(res.headers.get("content-range")).toBe(`bytes */${size}`);
  });

  it("answers If-None-Match with 304 and HEAD without a body", async () => {
    const first = await fetch(`${base}/repo/summary`);
    const etag = first.headers.get("etag")!;
    expect(etag).toBeTruthy();
    await first.arrayBuffer();
    // fetch() turns a manual If-None-Match into Cache-Control: no-cache (Fetch spec), so ask as ostree would.
    const revalidated = await rawGet("/repo/summary", { "if-none-match": etag });
    expect(revalidated.status).toBe(304);
    expect(revalidated.body).toBe("");
    const head = await fetch(`${base}/repo/summary`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get("content-length"))).toBe((await stat(join(repo, "summary"))).size);
  });

  it("marks content-addressed objects immutable and the summary revalidated", async () => {
    const objects = (await fetch(`${base}/repo/objects/${commit.slice(0, 2)}/${commit.slice(2)}.commit`)).headers.get("cache-control");
    expect(objects).toBe("public, max-age=31536000, immutable");
    expect((await fetch(`${base}/repo/summary`)).headers.get("cache-control")).toBe("no-cache");
  });

  it.each(["/repo/../config", "/repo/%2e%2e/%2e%2e/etc/passwd", "/repo/objects/..%2f..%2fconfig", "/repo/%ZZ"])("refuses the path %s with 400 and a reason", async (path) => {
    const res = await rawGet(path);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error).toMatchObject({ code: "E_BAD_PATH" });
    expect(JSON.parse(res.body).error.message).toMatch(/path/);
  });

  it("refuses hidden files and says what is missing", async () => {
    expect((await rawGet("/repo/.lock")).status).toBe(400);
    const missing = await rawGet("/repo/objects/00/nope.commit");
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body).error.message).toBe("no such file in the repo: /objects/00/nope.commit");
  });

  it("refuses methods other than GET and HEAD on the repo", async () => {
    const res = await fetch(`${base}/repo/summary`, { method: "POST", body: "x" });
    expect(res.status).toBe(405);
    expect((await res.json()).error.message).toMatch(/method POST is not allowed here/);
  });
});

describe("the admin API", () => {
  it("needs the bearer token", async () => {
    const none = await fetch(`${base}/api/v1/releases`);
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
    const wrong = await fetch(`${base}/api/v1/releases`, { headers: { authorization: "Bearer nope-nope-nope-nope" } });
    expect(wrong.status).toBe(401);
    expect((await wrong.json()).error.code).toBe("E_BAD_TOKEN");
  });

  it("lists what each channel publishes", async () => {
    const res = await fetch(`${base}/api/v1/releases`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    const { releases } = await res.json();
    expect(releases).toEqual([
      expect.objectContaining({ ref: REF, channel: "stable", version: "1", sequence: 1, commit, manifest: `channels/stable/${REF}.json`, deltas: [expect.objectContaining({ from: null })] }),
    ]);
  });

  it("describes itself in openapi.json without a token", async () => {
    const res = await fetch(`${base}/api/v1/openapi.json`);
    expect(res.status).toBe(200);
    expect(Object.keys((await res.json()).paths)).toContain("/api/v1/releases");
  });
});

describe("dashboard assets", () => {
  // Found by the server fuzz campaign (seed 20261206, case 8627): the asset table was a plain
  // object, so `constructor` named Object's and the read that followed answered 500.
  it.each(["constructor", "__proto__", "toString", "hasOwnProperty"])("answers 404 for an asset named %s", async (name) => {
    const res = await fetch(`${base}/assets/${name}`);
    expect(res.status).toBe(404);
  });
});

describe("dashboard sessions", () => {
  const signIn = async (): Promise<{ cookie: string; setCookie: string }> => {
    const res = await fetch(`${base}/login`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded" }, body: `token=${TOKEN}` });
    const setCookie = res.headers.get("set-cookie") ?? "";
    return { cookie: setCookie.split(";")[0]!, setCookie };
  };

  it("gives the cookie a lifetime, and ends every session on POST /api/v1/sessions/revoke", async () => {
    const { cookie, setCookie } = await signIn();
    expect(setCookie).toMatch(/Max-Age=43200/);
    expect(setCookie).toMatch(/HttpOnly/);
    expect((await fetch(`${base}/api/v1/fleet`, { headers: { cookie } })).status).toBe(200);
    const revoked = await fetch(`${base}/api/v1/sessions/revoke`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } });
    expect(revoked.status).toBe(200);
    expect((await fetch(`${base}/api/v1/fleet`, { headers: { cookie } })).status).toBe(401);
    expect((await fetch(`${base}/`, { headers: { cookie }, redirect: "manual" })).headers.get("location")).toBe("/login");
    const { cookie: fresh } = await signIn();
    expect((await fetch(`${base}/api/v1/fleet`, { headers: { cookie: fresh } })).status).toBe(200);
  });
});

describe("metrics", () => {
  it("counts requests by status and the repo bytes served, in Prometheus text", async () => {
    const before = await (await fetch(`${base}/metrics`)).text();
    const served = (n: string) => Number(/^aptostree_http_bytes_served_total (\d+)$/m.exec(n)?.[1]);
    const summary = await (await fetch(`${base}/repo/summary`)).arrayBuffer();
    const after = await (await fetch(`${base}/metrics`)).text();
    expect(served(after) - served(before)).toBe(summary.byteLength);
    expect(after).toMatch(/^aptostree_http_requests_total\{code="200"\} \d+$/m);
    expect(after).toMatch(/^aptostree_http_requests_total\{code="400"\} \d+$/m);
    expect(after).toMatch(/^# TYPE aptostree_http_bytes_served_total counter$/m);
  });
});
