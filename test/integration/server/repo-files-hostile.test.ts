/**
 * The repo is public and shares its origin with the admin dashboard, so whatever lands in it must
 * be served as inert data: files planted to run as pages, links out of the repo, directories and
 * names that make the file system fail. Nothing may leak a server path.
 */
import { request } from "node:http";
import { mkdir, readFile, realpath, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { silentLogger } from "../../../shared/log.ts";
import { publish } from "../../../server/publish/publish.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { commitSyntheticImage } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { testServerSettings } from "../../helpers/server-settings.ts";

const REF = "test/bookworm/test-machine/test-image";
const SECRET = "SECRET-outside-the-repo-7f3a9c";
const LONG_NAME = `${"n".repeat(250)}.html`;
let dir: string;
let repo: string;
let server: RunningServer;
let commit: string;
let adminToken: string;
/** Paths the answers must never name: the temp dir, the repo, the data dir, as given and as resolved. */
let serverPaths: string[];
const logLines: Array<Record<string, unknown>> = [];

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A request with the path exactly as written (fetch would normalise it). */
function get(path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: server.httpPort, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** What every answer from /repo must satisfy, whatever its status. */
function expectInert(answer: Answer, path: string): void {
  const type = String(answer.headers["content-type"] ?? "");
  expect(type, `content-type of ${path}`).not.toMatch(/html|svg|xml|javascript|ecmascript/i);
  if ([200, 206, 304, 404].includes(answer.status)) {
    expect(answer.headers["x-content-type-options"], `nosniff on ${path}`).toBe("nosniff");
    expect(String(answer.headers["content-security-policy"]), `CSP on ${path}`).toMatch(/default-src 'none'/);
  }
  const everything = `${JSON.stringify(answer.headers)}\n${answer.body.toString("latin1")}`;
  for (const serverPath of serverPaths) expect(everything, `a server path in the answer to ${path}`).not.toContain(serverPath);
  expect(everything).not.toContain(SECRET);
  expect(everything).not.toContain(adminToken);
}

beforeAll(async () => {
  dir = await makeTempDir("repo-hostile");
  repo = join(dir, "repo");
  const data = join(dir, "data");
  await initRepo(repo, "archive");
  commit = await commitSyntheticImage(repo, REF, dir, { version: "1", sequence: 1, payloadBytes: 100_000 });
  await publish({ repo, ref: REF, key: generateKeyPair(), channel: "stable", deltaDepth: 1, expiresInSeconds: 86400, log: silentLogger() });

  // Planted by whoever can write into the repo: pages, links out, odd names.
  await writeFile(join(repo, "evil.html"), "<!doctype html><script>fetch('/api/v1/fleet').then((r) => r.text()).then(alert)</script>");
  await writeFile(join(repo, "evil.svg"), '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>');
  await writeFile(join(repo, "evil.xml"), '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>');
  await writeFile(join(repo, "evil.js"), "alert(document.cookie)");
  await writeFile(join(repo, "evil.xhtml"), '<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>');
  await writeFile(join(repo, LONG_NAME), "<script>alert(1)</script>");
  await writeFile(join(dir, "secret.txt"), SECRET);
  await mkdir(join(dir, "outside"));
  await writeFile(join(dir, "outside", "file"), SECRET);
  await symlink("../secret.txt", join(repo, "secret-relative"));
  await symlink(join(dir, "secret.txt"), join(repo, "secret-absolute"));
  await symlink("../data/admin-token", join(repo, "admin-token"));
  await symlink("../../secret.txt", join(repo, "objects", "secret.commit"));
  await symlink("../outside", join(repo, "outside-dir"));
  await symlink("loop", join(repo, "loop"));
  await symlink("config", join(repo, "config-link"));
  await mkdir(join(repo, "dir.html"));
  await writeFile(join(repo, "dir.html", "index.html"), "<script>alert(1)</script>");

  const log = pino({ level: "debug" }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
  server = await startServer(testServerSettings({ repo, data, adminToken: null }), log);
  adminToken = (await readFile(join(data, "admin-token"), "utf8")).trim();
  serverPaths = [...new Set([dir, repo, data, await realpath(dir), await realpath(repo)])];
});
afterAll(async () => {
  await server?.close();
  await removeTree(dir);
});

describe("repo files are served as inert data", () => {
  it.each(["/repo/evil.html", "/repo/evil.svg", "/repo/evil.xml", "/repo/evil.js", "/repo/evil.xhtml", `/repo/${LONG_NAME}`])("serves %s as octet-stream, nosniff, sandboxed", async (path) => {
    const answer = await get(path);
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/octet-stream");
    expect(answer.headers["content-security-policy"]).toBe("default-src 'none'; sandbox");
    expectInert(answer, path);
  });

  it("keeps the manifests' JSON type, with the same headers", async () => {
    const answer = await get(`/repo/channels/stable/${REF}.json`);
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/json; charset=utf-8");
    expectInert(answer, "manifest");
  });

  it("answers a directory named like a file with a 404, not a redirect page", async () => {
    for (const path of ["/repo/dir.html", "/repo/dir.html/", "/repo/objects", "/repo/deltas"]) {
      const answer = await get(path);
      expect(answer.status, path).toBe(404);
      expectInert(answer, path);
    }
  });
});

describe("links never lead out of the repo", () => {
  it.each(["/repo/secret-relative", "/repo/secret-absolute", "/repo/admin-token", "/repo/objects/secret.commit", "/repo/outside-dir", "/repo/outside-dir/file"])(
    "answers %s with a 404 and none of the target's bytes",
    async (path) => {
      for (const method of ["GET", "HEAD"]) {
        const answer = await get(path, {}, method);
        expect(answer.status, `${method} ${path}`).toBe(404);
        expect(answer.headers["content-length"]).not.toBe(String(SECRET.length));
        expectInert(answer, path);
        expect(JSON.parse(answer.body.toString() || "{}").error?.message ?? "").not.toMatch(/secret\.txt|outside\//);
      }
    },
  );

  it("logs the refused link with where it led, for the operator", () => {
    expect(logLines).toContainEqual(expect.objectContaining({ event: "http.repo.outside", path: "/admin-token" }));
  });

  it("still follows a link that stays inside the repo", async () => {
    const answer = await get("/repo/config-link");
    expect(answer.status).toBe(200);
    expect(answer.body.toString()).toBe(await readFile(join(repo, "config"), "utf8"));
    expectInert(answer, "/repo/config-link");
  });
});

describe("file system errors name only the request path", () => {
  it.each([
    ["a symlink loop", "/repo/loop"],
    ["a name longer than NAME_MAX", `/repo/${"x".repeat(300)}`],
    ["a path longer than PATH_MAX", `/repo/${Array.from({ length: 40 }, () => "y".repeat(200)).join("/")}`],
    ["a file used as a directory", "/repo/config/x"],
  ])("%s gets a 404 without a server path", async (_what, path) => {
    const answer = await get(path);
    expect(answer.status).toBe(404);
    expect(answer.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(JSON.parse(answer.body.toString()).error.message).toMatch(/^no such file in the repo: \//);
    expectInert(answer, path);
  });
});

describe("what ostree and the agent fetch still works", () => {
  it("answers a Range request for an object and a delta part with 206", async () => {
    const objectPath = `/repo/objects/${commit.slice(0, 2)}/${commit.slice(2)}.commit`;
    const whole = await readFile(join(repo, objectPath.slice("/repo/".length)));
    const object = await get(objectPath, { range: "bytes=10-" });
    expect(object.status).toBe(206);
    expect(object.headers["content-range"]).toBe(`bytes 10-${whole.length - 1}/${whole.length}`);
    expect(object.body).toEqual(whole.subarray(10));
    expect(object.headers["content-type"]).toBe("application/octet-stream");
    expectInert(object, objectPath);

    const manifest = JSON.parse(await readFile(join(repo, `channels/stable/${REF}.json`), "utf8")).manifest;
    const part = manifest.deltas[0].files.at(-1).path as string;
    const delta = await get(`/repo/${part}`, { range: "bytes=0-99" });
    expect(delta.status).toBe(206);
    expect(delta.body).toEqual((await readFile(join(repo, part))).subarray(0, 100));
    expectInert(delta, part);
  });

  it("answers If-None-Match with 304 for the summary and the manifest", async () => {
    for (const path of ["/repo/summary", `/repo/channels/stable/${REF}.json`]) {
      const first = await get(path);
      expect(first.status, path).toBe(200);
      expect(first.headers.etag).toBeTruthy();
      const again = await get(path, { "if-none-match": String(first.headers.etag) });
      expect(again.status, path).toBe(304);
      expect(again.body.length).toBe(0);
      expectInert(again, path);
    }
  });

  it("answers HEAD with the length and no body, and an unsatisfiable range with 416", async () => {
    const head = await get("/repo/summary", {}, "HEAD");
    expect(head.status).toBe(200);
    expect(Number(head.headers["content-length"])).toBe((await readFile(join(repo, "summary"))).length);
    expectInert(head, "HEAD /repo/summary");
    const beyond = await get("/repo/config", { range: "bytes=999999-" });
    expect(beyond.status).toBe(416);
    expect(beyond.headers["content-range"]).toMatch(/^bytes \*\/\d+$/);
    expectInert(beyond, "/repo/config 416");
  });
});
