/**
 * V8 code caches for the bundled HTTP client (device/update/code-cache.ts), on real files: a
 * written cache is used, a changed source of the same length never runs from the old cache, a
 * damaged cache is refused by V8 and removed, and writing a new one removes the old. Each load
 * runs in a fresh Node process, as the agent's do: within one process V8 reuses what it compiled
 * and would not look at the file.
 */
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { hasCodeCache, type CodeCacheLoad, writeCodeCache } from "../../../device/update/code-cache.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let file: string;
let cacheDir: string;

/** A CommonJS module big enough for V8 to cache real code, whose exports name `tag`. */
function moduleSource(tag: string): string {
  const helpers = Array.from({ length: 50 }, (_, i) => `function helper${i}(x) { return x * ${i} + ${i}; }`).join("\n");
  return `"use strict";\n${helpers}\nconst { basename } = require("node:path");\nmodule.exports = { tag: "${tag}", sum: () => helper7(1) + helper9(2), base: basename(__filename) };\n`;
}

beforeEach(async () => {
  dir = await makeTempDir("code-cache");
  file = join(dir, "client.cjs");
  cacheDir = join(dir, "cache");
  await writeFile(file, moduleSource("AAAA"));
  await import("node:fs/promises").then((fs) => fs.mkdir(cacheDir));
});

afterEach(async () => {
  await removeTree(dir);
});

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const LOADER = `
import { register } from "tsx/esm/api";
register();
const { requireWithCodeCache } = await import(${JSON.stringify(new URL("../../../device/update/code-cache.ts", import.meta.url).href)});
const loaded = await requireWithCodeCache(process.env.FILE, process.env.CACHE_DIR);
process.stdout.write(JSON.stringify({ cache: loaded.cache, exports: { ...loaded.exports, sum: loaded.exports.sum() } }));
`;

type Exports = { tag: string; sum: number; base: string };

async function requireWithCodeCache(file: string, cacheDir: string): Promise<CodeCacheLoad<Exports>> {
  const result = await execa(process.execPath, ["--input-type=module", "-e", LOADER], { cwd: REPO, env: { FILE: file, CACHE_DIR: cacheDir } });
  return JSON.parse(result.stdout);
}

describe("code cache", () => {
  it("loads without a cache, then from the one written", async () => {
    expect(await hasCodeCache(file, cacheDir)).toBe(false);
    const cold = await requireWithCodeCache(file, cacheDir);
    expect(cold.cache).toBe("miss");
    expect(cold.exports).toMatchObject({ tag: "AAAA", base: "client.cjs" });
    expect(cold.exports.sum).toBe(7 + 7 + 18 + 9);
    const written = await writeCodeCache(file, cacheDir);
    expect((await readFile(written)).length).toBeGreaterThan(0);
    expect(await hasCodeCache(file, cacheDir)).toBe(true);
    const warm = await requireWithCodeCache(file, cacheDir);
    expect(warm.cache).toBe("hit");
    expect(warm.exports.tag).toBe("AAAA");
    expect(warm.exports.sum).toBe(41);
  });

  it("never runs a changed source of the same length from the old cache", async () => {
    await writeCodeCache(file, cacheDir);
    const changed = moduleSource("BBBB");
    expect(changed.length).toBe(moduleSource("AAAA").length);
    await writeFile(file, changed);
    expect(await hasCodeCache(file, cacheDir)).toBe(false);
    const loaded = await requireWithCodeCache(file, cacheDir);
    expect(loaded.cache).toBe("miss");
    expect(loaded.exports.tag).toBe("BBBB");
  });

  it("removes a cache V8 refuses, and loads the file anyway", async () => {
    const written = await writeCodeCache(file, cacheDir);
    const bytes = await readFile(written);
    // V8's header holds a checksum of the payload and a hash of its flags: spoil both.
    for (let i = 0; i < bytes.length; i += 7) bytes[i] = (bytes[i]! + 1) & 0xff;
    await writeFile(written, bytes);
    const loaded = await requireWithCodeCache(file, cacheDir);
    expect(loaded.cache).toBe("rejected");
    expect(loaded.exports.tag).toBe("AAAA");
    expect(await readdir(cacheDir)).toEqual([]);
  });

  it("keeps one cache per file: a new build's replaces the old, and a killed writer's temporary goes", async () => {
    const first = await writeCodeCache(file, cacheDir);
    await writeFile(join(cacheDir, ".client.cjs.0123.v8cache.tmp-99-abcd"), "partial");
    await writeFile(file, moduleSource("CCCC"));
    const second = await writeCodeCache(file, cacheDir);
    expect(second).not.toBe(first);
    expect(await readdir(cacheDir)).toEqual([second.slice(cacheDir.length + 1)]);
  });
});
