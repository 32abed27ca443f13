import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { isOwnerAlive, readBootId } from "../../shared/process-alive.ts";
import { join } from "node:path";

/** Big artifacts live here, never in the checkout: `APT_OSTREE_CACHE` or /var/cache/apt-ostree. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.APT_OSTREE_CACHE ?? "/var/cache/apt-ostree";
}

export interface AptCachePaths {
  /** Downloaded .debs, kept between composes. */
  archives: string;
  /** APT's index files, kept so a repeat update only revalidates. */
  lists: string;
  /** APT configuration used on the host to resolve packages. */
  config: string;
}

export interface AptCacheKey {
  distro: string;
  suite: string;
  architecture: string;
}

/** Where compose keeps the .debs of one distro, suite and architecture (apt-repo reads them). */
export function aptCacheArchives(cacheDir: string, key: AptCacheKey): string {
  return join(cacheDir, "apt", `${key.distro}-${key.suite}-${key.architecture}`, "archives");
}

/** One APT cache per distro, suite and architecture. */
export async function aptCachePaths(cacheDir: string, key: AptCacheKey): Promise<AptCachePaths> {
  const base = join(cacheDir, "apt", `${key.distro}-${key.suite}-${key.architecture}`);
  const paths = { archives: join(base, "archives"), lists: join(base, "lists"), config: join(base, "config") };
  for (const dir of [join(paths.archives, "partial"), join(paths.lists, "partial"), join(paths.config, "etc", "sources.list.d"), join(paths.config, "etc", "preferences.d"), join(paths.config, "etc", "apt.conf.d"), join(paths.config, "etc", "trusted.gpg.d")]) {
    await mkdir(dir, { recursive: true });
  }
  return paths;
}

/** Where composes keep their scratch trees. */
export function workDir(cacheDir: string): string {
  return join(cacheDir, "work");
}

/**
 * Scratch space for one compose, named by pid and boot id; the scratch of composes whose process
 * is gone (killed mid-way, or a host that went down since) is removed first, so a crash does not
 * leave a rootfs behind for good.
 */
export async function createWorkDir(cacheDir: string): Promise<string> {
  const base = workDir(cacheDir);
  await mkdir(base, { recursive: true });
  const bootId = (await readBootId()).replaceAll("-", "");
  for (const name of await readdir(base)) {
    // compose-<pid>-<boot id>-XXXXXX; folders from before the boot id have none.
    const match = /^compose-(\d+)-(?:([0-9a-f]{32})-)?/.exec(name);
    if (!match) continue;
    const owner = { pid: Number(match[1]), bootId: match[2] ?? null };
    if (!isOwnerAlive(owner, bootId)) await rm(join(base, name), { recursive: true, force: true });
  }
  return mkdtemp(join(base, `compose-${process.pid}-${bootId ? `${bootId}-` : ""}`));
}
