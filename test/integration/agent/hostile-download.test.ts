/**
 * A hostile mirror (or anyone on the plain-HTTP path) over real HTTP: a delta file whose body
 * never ends, is a byte longer than the signed manifest says, has the right size but other bytes,
 * or resumes at another offset than asked; a channel manifest that stalls after its headers,
 * trickles forever or is 50 MiB. Each is refused with its own code, nothing beyond the signed
 * size is ever written, and no part file is left behind.
 */
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { pollOnce } from "../../../device/agent/poll.ts";
import type { Agent } from "../../../device/agent/agent.ts";
import { ChannelFetchError, fetchChannelManifest } from "../../../device/update/channel.ts";
import { downloadVerified, DownloadError } from "../../../device/update/download.ts";
import { silentLogger } from "../../../shared/log.ts";
import { DeltaFileMismatchError } from "../../../shared/verify/delta-file.ts";
import { pseudoRandom } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const body = pseudoRandom(256 * 1024, "hostile-delta-part");
const entry = { path: "deltas/ab/cdef/0", size: body.length, sha256: createHash("sha256").update(body).digest("hex") };
const REF = "test/ref";
const MiB = 1024 * 1024;
const SMALL_MANIFEST = { manifest: { commit: "c".repeat(64) } };

type Mode =
  | "ok"
  | "endless"
  | "one-byte-more-announced"
  | "one-byte-more-chunked"
  | "wrong-bytes"
  | "stall-half"
  | "range-wrong-offset"
  | "range-too-long"
  | "manifest-small"
  | "manifest-stall"
  | "manifest-trickle"
  | "manifest-50mib-announced"
  | "manifest-50mib-chunked";
let mode: Mode = "ok";
/** Resolves when the last response's connection closes (the client hung up, or it ended). */
let lastClosed: Promise<void> = Promise.resolve();
const ranges: Array<string | undefined> = [];
let server: Server;
let base: string;
let url: string;
let dir: string;

/** Writes `next()` until it returns null or the client goes away, minding backpressure. */
function pump(res: ServerResponse, next: () => Buffer | null): void {
  const write = () => {
    while (!res.destroyed) {
      const chunk = next();
      if (chunk === null) return void res.end();
      if (!res.write(chunk)) return void res.once("drain", write);
    }
  };
  res.on("error", () => undefined);
  write();
}

function rangeStart(req: IncomingMessage): number {
  return req.headers.range ? Number(/bytes=(\d+)-/.exec(req.headers.range)![1]) : 0;
}

beforeAll(async () => {
  server = createServer((req, res) => {
    ranges.push(req.headers.range);
    lastClosed = new Promise((resolve) => res.once("close", () => resolve()));
    const from = rangeStart(req);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    switch (mode) {
      case "ok":
        res.writeHead(from > 0 ? 206 : 200, { "content-length": body.length - from, ...(from > 0 ? { "content-range": `bytes ${from}-${body.length - 1}/${body.length}` } : {}) });
        return void res.end(body.subarray(from));
      case "endless": {
        // No Content-Length: chunked, and it never ends.
        res.writeHead(200);
        return pump(res, () => chunk);
      }
      case "one-byte-more-announced":
        res.writeHead(200, { "content-length": body.length + 1 });
        return void res.end(Buffer.concat([body, Buffer.from("!")]));
      case "one-byte-more-chunked":
        res.writeHead(200);
        return void res.end(Buffer.concat([body, Buffer.from("!")]));
      case "wrong-bytes":
        res.writeHead(200, { "content-length": body.length });
        return void res.end(Buffer.from(body).fill(0, 1000, 2000));
      case "stall-half":
        res.writeHead(200, { "content-length": body.length });
        return void res.write(body.subarray(0, body.length / 2));
      case "range-wrong-offset": {
        // Asked for `from-`, answers from 1000 bytes earlier: appended, the file would be wrong.
        const start = from - 1000;
        res.writeHead(206, { "content-length": body.length - start, "content-range": `bytes ${start}-${body.length - 1}/${body.length}` });
        return void res.end(body.subarray(start));
      }
      case "range-too-long": {
        // The right offset, but announces (and sends) more than what is left of the file.
        const tail = Buffer.concat([body.subarray(from), chunk]);
        res.writeHead(206, { "content-length": tail.length, "content-range": `bytes ${from}-${from + tail.length - 1}/*` });
        return void res.end(tail);
      }
      case "manifest-small": {
        const small = JSON.stringify(SMALL_MANIFEST);
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(small) });
        return void res.end(small);
      }
      case "manifest-stall":
        res.writeHead(200, { "content-type": "application/json" });
        return void res.flushHeaders();
      case "manifest-trickle": {
        // A byte every 50 ms: never idle long enough for a per-read timeout.
        res.writeHead(200, { "content-type": "application/json" });
        res.write("[");
        const timer = setInterval(() => (res.destroyed ? clearInterval(timer) : res.write(" ")), 50);
        res.on("close", () => clearInterval(timer));
        return;
      }
      case "manifest-50mib-announced":
      case "manifest-50mib-chunked": {
        // Valid JSON naming a commit, padded to 50 MiB.
        const head = Buffer.from(`{"manifest":{"commit":"${"c".repeat(64)}","pad":"`);
        const tail = Buffer.from(`"}}`);
        const total = 50 * MiB;
        res.writeHead(200, { "content-type": "application/json", ...(mode === "manifest-50mib-announced" ? { "content-length": total } : {}) });
        let sent = 0;
        return pump(res, () => {
          if (sent === 0) return (sent += head.length), head;
          if (sent >= total) return null;
          const left = total - sent;
          if (left === tail.length) return (sent += tail.length), tail;
          const pad = chunk.subarray(0, Math.min(chunk.length, left - tail.length));
          sent += pad.length;
          return pad;
        });
      }
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  url = `${base}/repo/${entry.path}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  if (dir) await removeTree(dir);
});
beforeEach(async () => {
  if (dir) await removeTree(dir);
  dir = await makeTempDir("hostile-download");
  ranges.length = 0;
  mode = "ok";
});

/** Bytes under `path`, every file counted. */
async function diskUse(path: string): Promise<number> {
  let total = 0;
  for (const item of await readdir(path, { withFileTypes: true, recursive: true })) {
    if (item.isFile()) total += (await stat(join(item.parentPath ?? item.path, item.name))).size;
  }
  return total;
}

/**
 * Download options that record the most bytes ever reported and ever found on disk, and stop a
 * download that went past the signed size (so the unfixed code cannot fill the disk here).
 */
function watched(dest: string, stallMs = 5000) {
  const seen = { reported: 0, onDisk: 0 };
  const options = {
    stallMs,
    onBytes: (n: number) => {
      seen.reported = Math.max(seen.reported, n);
      seen.onDisk = Math.max(seen.onDisk, statSync(`${dest}.part`, { throwIfNoEntry: false })?.size ?? 0);
      if (n > entry.size) throw new Error(`test guard: ${n} bytes written, the manifest allows ${entry.size}`);
    },
  };
  return { seen, options };
}

describe("a delta file from a hostile mirror", () => {
  it("stops an endless body at the signed size, writes no more than that and removes the part", async () => {
    const dest = join(dir, entry.path);
    mode = "endless";
    const { seen, options } = watched(dest);
    const started = Date.now();
    const refused = downloadVerified(url, dest, entry, options);
    await expect(refused).rejects.toThrow(DownloadError);
    await expect(refused).rejects.toMatchObject({ code: "E_DOWNLOAD_TOO_LARGE", retryable: false, message: expect.stringContaining(url) });
    await expect(refused).rejects.toThrow(`goes on past the ${entry.size} bytes the signed manifest allows`);
    expect(Date.now() - started).toBeLessThan(5000);
    // The agent hung up: the server is not left writing into a connection nobody reads.
    await lastClosed;
    expect(seen.reported).toBeLessThanOrEqual(entry.size);
    expect(seen.onDisk).toBeLessThanOrEqual(entry.size);
    expect(await diskUse(dir)).toBe(0);
  });

  it("refuses a body announced one byte longer than the manifest says, before reading it", async () => {
    const dest = join(dir, entry.path);
    mode = "one-byte-more-announced";
    const { seen, options } = watched(dest);
    const refused = downloadVerified(url, dest, entry, options);
    await expect(refused).rejects.toMatchObject({ code: "E_DOWNLOAD_TOO_LARGE", retryable: false, message: expect.stringMatching(/Content-Length/) });
    expect(seen.reported).toBe(0);
    expect(await diskUse(dir)).toBe(0);
  });

  it("refuses an unannounced body one byte longer than the manifest says, and never writes that byte", async () => {
    const dest = join(dir, entry.path);
    mode = "one-byte-more-chunked";
    const { seen, options } = watched(dest);
    const refused = downloadVerified(url, dest, entry, options);
    await expect(refused).rejects.toMatchObject({ code: "E_DOWNLOAD_TOO_LARGE", retryable: false, message: expect.stringContaining(`goes on past the ${entry.size} bytes`) });
    expect(seen.reported).toBeLessThanOrEqual(entry.size);
    expect(seen.onDisk).toBeLessThanOrEqual(entry.size);
    expect(await diskUse(dir)).toBe(0);
  });

  it("refuses the right size with the wrong bytes and removes them", async () => {
    const dest = join(dir, entry.path);
    mode = "wrong-bytes";
    const refused = downloadVerified(url, dest, entry, watched(dest).options);
    await expect(refused).rejects.toThrow(DeltaFileMismatchError);
    await expect(refused).rejects.toMatchObject({ code: "E_DELTA_FILE_MISMATCH", message: expect.stringContaining("the sha256") });
    expect(await diskUse(dir)).toBe(0);
  });

  it("refuses a 206 that starts elsewhere than the Range asked, before reading it, and starts over next time", async () => {
    const dest = join(dir, entry.path);
    mode = "stall-half";
    await expect(downloadVerified(url, dest, entry, { stallMs: 300 })).rejects.toMatchObject({ code: "E_DOWNLOAD_STALLED" });
    // A stall keeps the part, to resume it.
    expect(await diskUse(dir)).toBe(entry.size / 2);
    mode = "range-wrong-offset";
    const { seen, options } = watched(dest);
    const refused = downloadVerified(url, dest, entry, options);
    await expect(refused).rejects.toMatchObject({ code: "E_DOWNLOAD_BAD_RANGE", retryable: true, message: expect.stringContaining(`bytes=${entry.size / 2}-`) });
    expect(ranges.at(-1)).toBe(`bytes=${entry.size / 2}-`);
    expect(seen.reported).toBe(0);
    expect(await diskUse(dir)).toBe(0);
    // Without a part there is no Range to get wrong.
    mode = "ok";
    await downloadVerified(url, dest, entry, { stallMs: 5000 });
    expect(ranges.at(-1)).toBeUndefined();
    expect(await diskUse(dir)).toBe(entry.size);
  });

  it("refuses a 206 announcing more than what is left of the file, before reading it", async () => {
    const dest = join(dir, entry.path);
    mode = "stall-half";
    await expect(downloadVerified(url, dest, entry, { stallMs: 300 })).rejects.toMatchObject({ code: "E_DOWNLOAD_STALLED" });
    mode = "range-too-long";
    const { seen, options } = watched(dest);
    const refused = downloadVerified(url, dest, entry, options);
    await expect(refused).rejects.toMatchObject({ code: "E_DOWNLOAD_TOO_LARGE", retryable: false, message: expect.stringMatching(/Content-Length/) });
    expect(seen.reported).toBe(0);
    expect(await diskUse(dir)).toBe(0);
  });
});

describe("a channel manifest from a hostile server", () => {
  const limits = { timeoutMs: 800 };

  it("is fetched when it is a small manifest", async () => {
    mode = "manifest-small";
    expect(await fetchChannelManifest(`${base}/repo`, "stable", REF, limits)).toEqual(SMALL_MANIFEST);
  });

  it.each([
    ["stalls forever after its headers", "manifest-stall"],
    ["trickles a byte every 50 ms, forever", "manifest-trickle"],
  ] as const)("is refused in time when it %s", async (_what, which) => {
    mode = which;
    const started = Date.now();
    const refused = fetchChannelManifest(`${base}/repo`, "stable", REF, limits);
    await expect(refused).rejects.toThrow(ChannelFetchError);
    await expect(refused).rejects.toMatchObject({ code: "E_CHANNEL_TIMEOUT", message: expect.stringContaining("0.8 s") });
    expect(Date.now() - started).toBeLessThan(limits.timeoutMs + 1500);
  }, 10_000);

  it.each([
    ["announced in its Content-Length", "manifest-50mib-announced"],
    ["sent without a Content-Length", "manifest-50mib-chunked"],
  ] as const)("is refused when it is 50 MiB, %s", async (_what, which) => {
    mode = which;
    const started = Date.now();
    const refused = fetchChannelManifest(`${base}/repo`, "stable", REF, { timeoutMs: 5000 });
    await expect(refused).rejects.toThrow(ChannelFetchError);
    await expect(refused).rejects.toMatchObject({ code: "E_CHANNEL_TOO_LARGE", message: expect.stringContaining(`${MiB} bytes`) });
    expect(Date.now() - started).toBeLessThan(5000);
  }, 10_000);

  it("leaves the agent idle when polled: the refusal is logged and no update is taken", async () => {
    mode = "manifest-50mib-chunked";
    const accepted: string[] = [];
    const warnings: unknown[] = [];
    const log = silentLogger();
    log.warn = ((fields: unknown) => void warnings.push(fields)) as typeof log.warn;
    // What pollOnce uses of the agent: its state, the booted deployment and taking a manifest.
    const agent = { state: { name: "idle" }, bootedDeployment: async () => null, acceptManifest: async (id: string) => void accepted.push(id) } as unknown as Agent;
    const result = await pollOnce({ agent, settings: { server: base, repo: null, channel: "stable", ref: REF, pollSeconds: 3600 }, connected: () => false, log });
    expect(result).toBe("failed");
    expect(accepted).toEqual([]);
    expect(warnings).toMatchObject([{ event: "agent.poll.failed", err: { code: "E_CHANNEL_TOO_LARGE" } }]);
  }, 10_000);
});
