/**
 * Host-side APT against the persistent cache: refresh the indices and resolve the package set
 * before mmdebstrap downloads anything, so a package APT cannot find fails early and names the
 * recipe file that asked for it.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { AptOstreeError } from "../../shared/errors.ts";
import { parseMissingPackages, parseSimulatedInstalls, type SimulatedPackage } from "../../shared/apt/simulate.ts";
import type { AptCachePaths } from "./cache.ts";
import { RecipeError, type Recipe } from "./recipe.ts";
import { requestedPackages, sourcesLines } from "./sources.ts";

export class AptError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_APT", message, { cause });
  }
}

export type ResolvedPackage = SimulatedPackage;

async function writeAptConfig(recipe: Recipe, cache: AptCachePaths): Promise<string> {
  const etc = join(cache.config, "etc");
  await writeFile(join(etc, "sources.list"), `${sourcesLines(recipe, { signedBy: true }).join("\n")}\n`);
  await writeFile(join(cache.config, "status"), "");
  const conf = [
    `Dir::Etc "${etc}/";`,
    `Dir::State "${cache.config}/state/";`,
    `Dir::State::Lists "${cache.lists}/";`,
    `Dir::State::status "${cache.config}/status";`,
    `Dir::Cache "${cache.config}/cache/";`,
    `Dir::Cache::Archives "${cache.archives}/";`,
    `APT::Architecture "${recipe.architecture}";`,
    `APT::Architectures { "${recipe.architecture}"; };`,
    `APT::Install-Recommends "false";`,
    `Acquire::Languages "none";`,
  ].join("\n");
  const path = join(cache.config, "apt.conf");
  await writeFile(path, `${conf}\n`);
  return path;
}

async function aptGet(configFile: string, args: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const result = await execa("apt-get", args, {
    env: { APT_CONFIG: configFile, DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C.UTF-8" },
    reject: false,
  });
  if (result.failed && result.exitCode === undefined) throw new AptError(`cannot run apt-get: ${result.shortMessage}`);
  return { stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode ?? 1 };
}

/**
 * `apt-get update` into the cache, unless our last refresh of the same sources is younger than
 * `maxAgeSeconds` (Debian's mirrors here ignore If-Modified-Since, so every update refetches
 * InRelease). The age is that of our own refresh, kept in a stamp: apt sets the index files'
 * mtimes to the mirror's Last-Modified, which says nothing about when we fetched them.
 * Returns how many index files were downloaded.
 */
export async function refreshIndices(recipe: Recipe, cache: AptCachePaths, maxAgeSeconds: number, now = Date.now()): Promise<number> {
  const config = await writeAptConfig(recipe, cache);
  const sources = sourcesLines(recipe, { signedBy: true });
  const stampFile = join(cache.config, "indices-refreshed.json");
  const stamp = await readFile(stampFile, "utf8").then((text) => JSON.parse(text) as { sources: string[]; at: number }, () => null);
  if (stamp && JSON.stringify(stamp.sources) === JSON.stringify(sources) && (now - stamp.at) / 1000 < maxAgeSeconds) return 0;
  const result = await aptGet(config, ["update"]);
  if (result.exitCode !== 0 || /^(E|W): /m.test(result.stderr)) {
    const reason = result.stderr.split("\n").find((line) => /^(E|W): /.test(line)) ?? `exit code ${result.exitCode}`;
    throw new AptError(`apt-get update for ${recipe.suite} (${recipe.architecture}) failed: ${reason}`);
  }
  await writeFile(stampFile, JSON.stringify({ sources, at: now }));
  return result.stdout.split("\n").filter((line) => line.startsWith("Get:")).length;
}

/** Resolves the recipe's packages with dependencies, as `apt-get install --simulate` on an empty system would. */
export async function resolvePackages(recipe: Recipe, cache: AptCachePaths): Promise<ResolvedPackage[]> {
  const config = join(cache.config, "apt.conf");
  const result = await aptGet(config, ["install", "--simulate", "--no-install-recommends", ...requestedPackages(recipe)]);
  const missing = parseMissingPackages(result.stderr);
  if (missing.length > 0) {
    const byFile = new Map<string, string[]>();
    for (const name of missing) {
      const file = recipe.packageOrigins.get(name) ?? recipe.files.at(-1)!;
      byFile.set(file, [...(byFile.get(file) ?? []), name]);
    }
    const [[file, names], ...others] = [...byFile.entries()] as [[string, string[]], ...Array<[string, string[]]>];
    const quote = (list: string[]) => list.map((n) => `'${n}'`).join(", ");
    const also = others.map(([f, n]) => `; ${f}: packages: also ${quote(n)}`).join("");
    throw new RecipeError(file, "packages", `APT cannot find ${quote(names)} in ${recipe.distro} ${recipe.suite} (${recipe.architecture})${also}`);
  }
  if (result.exitCode !== 0) {
    const reason = result.stderr.split("\n").filter((line) => line.startsWith("E: ") || line.startsWith(" ")).join(" ").trim();
    throw new AptError(`APT cannot resolve the package set for ${recipe.image} on ${recipe.machine}: ${reason || `exit code ${result.exitCode}`}`);
  }
  return parseSimulatedInstalls(result.stdout);
}
