/**
 * Delta file downloads over real HTTP: a stalled transfer is aborted by the watchdog and the next
 * attempt resumes with a Range request from where the file stopped; a server that ignores Range
 * still yields the right file; bytes that do not match the signed sha256 are thrown away.
 */
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdir, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { downloadVerified, DownloadError } from "../../../device/update/download.ts";
import { DeltaFileMismatchError } from "../../../shared/verify/delta-file.ts";
import { pseudoRandom } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const body = pseudoRandom(1_000_000, "delta-part");
const entry = { path: "deltas/ab/cdef/0", size: body.length, sha256: createHash("sha256").update(body).digest("hex") };
let mode: "ok" | "stall-half" | "ignore-range" | "corrupt" = "ok";
const ranges: Array<string | undefined> = [];
let server: Server;
let url: string;
let dir: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    ranges.push(req.headers.range);
    const from = mode !== "ignore-range" && req.headers.range ? Number(/bytes=(\d+)-/.exec(req.headers.range)![1]) : 0;
    const payload = mode === "corrupt" ? Buffer.from(body).fill(0, 1000, 2000) : body;
    res.writeHead(from > 0 ? 206 : 200, { "content-length": payload.length - from, ...(from > 0 ? { "content-range": `bytes ${from}-${payload.length - 1}/${payload.length}` } : {}) });
    if (mode === "stall-half") {
      res.write(payload.subarray(from, payload.length / 2));
      return; // never ends: the watchdog must notice
    }
    res.end(payload.subarray(from));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/repo/${entry.path}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});
beforeEach(async () => {
  if (dir) await removeTree(dir);
  dir = await makeTempDir("download");
  ranges.length = 0;
  mode = "ok";
});

describe("delta file download", () => {
  it("aborts a stalled transfer and resumes it with a Range request", async () => {
    const dest = join(dir, entry.path);
    mode = "stall-half";
    const stalled = downloadVerified(url, dest, entry, { stallMs: 300 });
    await expect(stalled).rejects.toThrow(DownloadError);
    await expect(stalled).rejects.toMatchObject({ code: "E_DOWNLOAD_STALLED", retryable: true, transient: true });
    const partial = (await stat(`${dest}.part`)).size;
    expect(partial).toBe(body.length / 2);
    mode = "ok";
    const progress: number[] = [];
    await downloadVerified(url, dest, entry, { stallMs: 5000, onBytes: (n) => progress.push(n) });
    expect(ranges.at(-1)).toBe(`bytes=${partial}-`);
    expect(progress[0]).toBeGreaterThan(partial);
    expect(progress.at(-1)).toBe(body.length);
    expect((await readFile(dest)).equals(body)).toBe(true);
  });

  // A real full filesystem: a 512 KiB tmpfs (mounting needs root, which the test machine has).
  it.runIf(process.getuid?.() === 0)("takes a full filesystem as a transient failure: no crash, the part removed, and a later try gets the file", async () => {
    const small = join(dir, "small");
    await mkdir(small);
    await execa("mount", ["-t", "tmpfs", "-o", "size=512k", "tmpfs", small]);
    try {
      const dest = join(small, entry.path);
      const full = downloadVerified(url, dest, entry, { stallMs: 5000 });
      await expect(full).rejects.toMatchObject({ code: "E_DOWNLOAD_NO_SPACE", retryable: true, transient: true, discardPart: true });
      await expect(full).rejects.toThrow(/no space left on device.*waiting for space/i);
      expect(await readdir(join(small, "deltas/ab/cdef"))).toEqual([]);
      // Room again: the next try fetches the whole file.
      await execa("mount", ["-o", "remount,size=4m", small]);
      await downloadVerified(url, dest, entry, { stallMs: 5000 });
      expect(createHash("sha256").update(await readFile(dest)).digest("hex")).toBe(entry.sha256);
    } finally {
      await execa("umount", [small]);
    }
  });

  it("starts over when the server ignores Range, and still gets the right file", async () => {
    const dest = join(dir, entry.path);
    mode = "stall-half";
    await expect(downloadVerified(url, dest, entry, { stallMs: 300 })).rejects.toThrow(DownloadError);
    mode = "ignore-range";
    await downloadVerified(url, dest, entry, { stallMs: 5000 });
    expect((await readFile(dest)).equals(body)).toBe(true);
  });

  it("throws away bytes that do not match the signed sha256", async () => {
    const dest = join(dir, entry.path);
    mode = "corrupt";
    await expect(downloadVerified(url, dest, entry, { stallMs: 5000 })).rejects.toThrow(DeltaFileMismatchError);
    await expect(stat(`${dest}.part`)).rejects.toThrow(/ENOENT/);
    await expect(stat(dest)).rejects.toThrow(/ENOENT/);
  });

  it("keeps a complete, verified file and does not fetch it again", async () => {
    const dest = join(dir, entry.path);
    await downloadVerified(url, dest, entry, { stallMs: 5000 });
    const requests = ranges.length;
    await downloadVerified(url, dest, entry, { stallMs: 5000 });
    expect(ranges.length).toBe(requests);
  });
});
