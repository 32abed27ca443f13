/**
 * The .debs an image was composed from: the package list of each commit on a ref (its
 * `apt-ostree.packages` metadata) looked up by exact name, version and architecture in the
 * compose cache, where mmdebstrap downloaded them. Devices layer against the base they run, so
 * the last few versions of the ref are included, not only its head.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { PackageEntry } from "../../shared/image/commit-metadata.ts";
import { resolveRef } from "../../shared/ostree/repo.ts";
import { commitHistory } from "../publish/history.ts";
import { aptCacheArchives } from "../compose/cache.ts";
import { parse as parseYaml } from "yaml";
import { runOstree } from "../../shared/ostree/exec.ts";
import { AptRepoError, checkArchitecture, checkDebFields, checkSuiteName, type DebFile } from "./build.ts";

export interface ImageDebs {
  ref: string;
  distro: string;
  suite: string;
  /** Debian architecture of the image (its `all` packages go into this architecture's index). */
  architecture: string;
  versions: string[];
  debs: DebFile[];
  /** Packages of the image the cache no longer has (cleaned, or composed on another host). */
  missing: PackageEntry[];
}

/**
 * The suite devices of the image ask for: the `layeringSuite` compose wrote into the image's
 * agent.yaml (--apt-keyring), else the default ref template's second part. `given` (--suite)
 * wins; the distro (the compose cache's name) is the ref's first part unless given.
 */
export async function distroAndSuite(repo: string, commit: string, ref: string, given: { distro?: string | undefined; suite?: string | undefined }): Promise<{ distro: string; suite: string; fromImage: boolean }> {
  const [distro, refSuite] = ref.split("/");
  const agentYaml = await runOstree(["cat", `--repo=${repo}`, commit, "/usr/lib/apt-ostree/agent.yaml"]).catch(() => "");
  const imageSuite = (() => {
    try {
      const value = (parseYaml(agentYaml) as { layeringSuite?: unknown } | null)?.layeringSuite;
      return typeof value === "string" ? value : undefined;
    } catch {
      return undefined;
    }
  })();
  const result = { distro: given.distro ?? distro ?? "", suite: given.suite ?? imageSuite ?? refSuite ?? "", fromImage: given.suite === undefined && imageSuite !== undefined };
  if (!result.distro || !result.suite) throw new AptRepoError(`cannot tell the distro and suite of ref '${ref}' (not <distro>/<suite>/..., and its image has no layeringSuite): pass --distro and --suite`);
  checkSuiteName(result.suite);
  checkSuiteName(result.distro);
  return result;
}

/** apt's name for a downloaded package (an epoch's ':' is escaped). */
export function archiveFileName(entry: PackageEntry): string {
  return `${entry.name}_${entry.version.replace(/:/g, "%3a")}_${entry.architecture}.deb`;
}

export async function imageDebs(options: { repo: string; ref: string; cacheDir: string; history: number; distro?: string; suite?: string }): Promise<ImageDebs> {
  const head = await resolveRef(options.repo, options.ref);
  if (head === null) throw new AptRepoError(`ref '${options.ref}' does not exist in ${options.repo}`);
  const entries = await commitHistory(options.repo, head, options.history - 1);
  const architecture = entries[0]!.info.architecture;
  checkArchitecture(architecture, `${options.ref}'s architecture`);
  const { distro, suite } = await distroAndSuite(options.repo, head, options.ref, options);
  const archives = aptCacheArchives(options.cacheDir, { distro, suite, architecture });
  if (!(await stat(archives).catch(() => null))?.isDirectory()) {
    throw new AptRepoError(`the compose cache has no packages for ${distro} ${suite} ${architecture} (${archives}): apt-repo publishes the .debs compose downloaded there; compose the image on this host first, or pass --cache (or --distro and --suite when the ref is not <distro>/<suite>/...)`);
  }
  const seen = new Map<string, DebFile>();
  const missing = new Map<string, PackageEntry>();
  for (const entry of entries) {
    for (const pkg of entry.info.packages) {
      const file = archiveFileName(pkg);
      if (seen.has(file) || missing.has(file)) continue;
      checkDebFields(pkg, `${options.ref} version ${entry.info.version}`);
      const path = join(archives, file);
      if ((await stat(path).catch(() => null))?.isFile()) seen.set(file, { path, ...pkg });
      else missing.set(file, pkg);
    }
  }
  return { ref: options.ref, distro, suite, architecture, versions: entries.map((e) => e.info.version), debs: [...seen.values()], missing: [...missing.values()] };
}
