import { mkdir } from "node:fs/promises";
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

/** One APT cache per distro, suite and architecture. */
export async function aptCachePaths(cacheDir: string, key: { distro: string; suite: string; architecture: string }): Promise<AptCachePaths> {
  const base = join(cacheDir, "apt", `${key.distro}-${key.suite}-${key.architecture}`);
  const paths = { archives: join(base, "archives"), lists: join(base, "lists"), config: join(base, "config") };
  for (const dir of [join(paths.archives, "partial"), join(paths.lists, "partial"), join(paths.config, "etc", "sources.list.d"), join(paths.config, "etc", "preferences.d"), join(paths.config, "etc", "apt.conf.d"), join(paths.config, "etc", "trusted.gpg.d")]) {
    await mkdir(dir, { recursive: true });
  }
  return paths;
}

/** Scratch space for one compose (rootfs), removed when it ends. */
export function workDir(cacheDir: string): string {
  return join(cacheDir, "work");
}
