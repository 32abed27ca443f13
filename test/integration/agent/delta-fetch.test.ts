/**
 * A static delta's files are fetched several at once over real HTTP, and when one of them fails
 * the others are stopped and settle before the failure is reported: a retry never finds a
 * download from the failed attempt still writing to a part file.
 */
import { anyOf } from "../../../shared/trust/signers.ts";
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stageUpdate, StageError } from "../../../device/update/stage.ts";
import type { Deployment } from "../../../device/sysroot/deployments.ts";
import { silentLogger } from "../../../shared/log.ts";
import type { Manifest } from "../../../shared/wire/manifest.ts";
import { pseudoRandom } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const FROM = "a".repeat(64);
const DIR = "deltas/ab/cdef";
const names = ["superblock", "0", "1", "2"];
const bodies = new Map(names.map((name) => [`${DIR}/${name}`, pseudoRandom(400_000, `delta-${name}`)]));
/** The file whose transfer stops half-way and never finishes. */
const STALLS = `${DIR}/1`;

let server: Server;
let base: string;
let inFlight = 0;
let mostInFlight = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = req.url!.replace(/^\/repo\//, "");
    const body = bodies.get(path);
    if (!body) return void res.writeHead(404).end();
    inFlight++;
    mostInFlight = Math.max(mostInFlight, inFlight);
    res.on("close", () => inFlight--);
    res.writeHead(200, { "content-length": body.length });
    if (path === STALLS) return void res.write(body.subarray(0, body.length / 2));
    // The others trickle, so they are still running when the stall is noticed.
    let at = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      res.write(body.subarray(at, (at += 4096)));
      if (at >= body.length) {
        clearInterval(timer);
        res.end();
      }
    }, 20);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/repo`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function manifest(): Manifest {
  const files = names.map((name) => {
    const body = bodies.get(`${DIR}/${name}`)!;
    return { path: `${DIR}/${name}`, size: body.length, sha256: createHash("sha256").update(body).digest("hex") };
  });
  return {
    schema: 1, ref: "test/ref", commit: "b".repeat(64), version: "2", sequence: 2, architecture: "amd64", channel: "stable",
    issued: new Date().toISOString(), expires: new Date(Date.now() + 86_400_000).toISOString(), downgrade: false,
    deltas: [{ from: FROM, fromVersion: "1", size: files.reduce((n, f) => n + f.size, 0), files }],
  };
}

const booted = { checksum: FROM, base: FROM, booted: true } as Deployment;

async function partSizes(dir: string): Promise<Record<string, number>> {
  const sizes: Record<string, number> = {};
  for (const name of await readdir(join(dir, DIR))) sizes[name] = (await stat(join(dir, DIR, name))).size;
  return sizes;
}

describe("fetching a static delta", () => {
  it("fetches files at once, and a stalled one stops the rest before the failure is reported", async () => {
    const dir = await makeTempDir("delta-fetch");
    try {
      const staged = stageUpdate({
        sysroot: join(dir, "sysroot"), rootDir: "/", osname: "test", repoUrl: base, manifest: manifest(), deployments: [booted],
        imageSigners: anyOf([]), downloadDir: dir, stage: false, stallMs: 400, onProgress: () => undefined, log: silentLogger(),
      });
      await expect(staged).rejects.toThrow(StageError);
      await expect(staged).rejects.toMatchObject({ retryable: true, message: expect.stringContaining(`GET ${base}/${STALLS}: no progress`) });
      expect(mostInFlight).toBeGreaterThan(1);

      const settled = await partSizes(dir);
      // The trickling downloads were stopped part-way, not left to finish.
      expect(Object.entries(settled).some(([name, size]) => name.endsWith(".part") && name !== "1.part" && size < 400_000)).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await partSizes(dir)).toEqual(settled);
    } finally {
      await removeTree(dir);
    }
  });
});
