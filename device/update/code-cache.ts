/**
 * Loads a CommonJS file with a V8 code cache, as Node 22's module compile cache does (Debian's
 * Node 18 has none): compiling the agent's bundled HTTP client is half of the ~45 ms an update
 * waits for it, and a cache hit skips it (docs/agent.md "Staging cost").
 *
 * The cache file is named by the sha256 of the source, Node's version and the architecture, since
 * V8 itself checks only the source's length. A file V8 rejects (another build of V8, other flags,
 * damage) costs a normal compile and is removed. The cache is written by a separate process
 * (`apt-ostreed --write-code-cache`), so the idle agent never compiles what it does not run.
 */
import { createHash, type Hash } from "node:crypto";
import { access, readdir, readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { removeAtomicWriteLeftovers, writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import { removeFile } from "../../shared/fs/remove-file.ts";

const SUFFIX = ".v8cache";

/** The cache's path for `file` whose bytes were fed to `keyHash()`'s hash. */
function cacheFileFor(file: string, cacheDir: string, keyed: Hash): string {
  return join(cacheDir, `${basename(file)}.${keyed.digest("hex").slice(0, 32)}${SUFFIX}`);
}

function keyHash(): Hash {
  return createHash("sha256").update(`${process.version}\0${process.arch}\0`);
}

/** Compiles `source` as Node wraps a CommonJS module, with `cachedData` when there is one. */
async function compile(file: string, source: string, cachedData?: Buffer) {
  // The flags must be those of the process that wrote the cache; the client sets this one itself.
  await import("./wasm-baseline-only.ts");
  const { Script } = await import("node:vm");
  return new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });
}

async function run<T>(file: string, script: import("node:vm").Script): Promise<T> {
  const { createRequire } = await import("node:module");
  const module = { exports: {} as T };
  (script.runInThisContext() as (...args: unknown[]) => void)(module.exports, createRequire(file), module, file, dirname(file));
  return module.exports;
}

export interface CodeCacheLoad<T> {
  exports: T;
  /** "hit": compiled from the cache; "miss": there was none; "rejected": V8 refused it (now removed). */
  cache: "hit" | "miss" | "rejected";
}

export async function requireWithCodeCache<T>(file: string, cacheDir: string): Promise<CodeCacheLoad<T>> {
  const bytes = await readFile(file);
  const cacheFile = cacheFileFor(file, cacheDir, keyHash().update(bytes));
  const cachedData = await readFile(cacheFile).catch(() => undefined);
  const script = await compile(file, bytes.toString("utf8"), cachedData);
  const rejected = cachedData !== undefined && script.cachedDataRejected === true;
  if (rejected) await removeFile(cacheFile);
  return { exports: await run<T>(file, script), cache: cachedData === undefined ? "miss" : rejected ? "rejected" : "hit" };
}

/** Whether `file` has a cache in `cacheDir` (by name: V8 still checks it when it is used). Reads the file whole, as the load does; nothing keeps the copy. */
export async function hasCodeCache(file: string, cacheDir: string): Promise<boolean> {
  const cacheFile = cacheFileFor(file, cacheDir, keyHash().update(await readFile(file)));
  return access(cacheFile).then(() => true, () => false);
}

/**
 * Compiles and runs `file` (so the functions its start-up compiles are in the cache too), writes
 * its cache atomically and removes the caches of earlier versions of it. Returns the cache's path.
 */
export async function writeCodeCache(file: string, cacheDir: string): Promise<string> {
  const bytes = await readFile(file);
  const script = await compile(file, bytes.toString("utf8"));
  await run(file, script);
  const cacheFile = cacheFileFor(file, cacheDir, keyHash().update(bytes));
  await writeFileAtomic(cacheFile, script.createCachedData(), 0o600);
  // Earlier builds' caches, and any cache's temporary that a writer killed mid-write left.
  const isCache = (name: string) => name.startsWith(`${basename(file)}.`) && name.endsWith(SUFFIX);
  await removeAtomicWriteLeftovers(cacheDir, isCache);
  for (const name of await readdir(cacheDir)) {
    if (isCache(name) && join(cacheDir, name) !== cacheFile) await removeFile(join(cacheDir, name));
  }
  return cacheFile;
}
