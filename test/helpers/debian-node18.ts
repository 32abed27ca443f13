/**
 * Debian bookworm's own Node.js 18 (what the device image runs), with ostree, as a root tree made
 * once by mmdebstrap and kept under the cache dir; commands run chrooted into it in a private
 * mount namespace with /dev, /proc and the host's /tmp (where test fixtures live) bound in.
 */
import { mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { defaultCacheDir } from "../../server/compose/cache.ts";

const PACKAGES = ["nodejs", "ostree", "ca-certificates"];

export async function ensureNode18Root(cacheDir = defaultCacheDir()): Promise<string> {
  const root = join(cacheDir, "test-roots", "bookworm-nodejs");
  if (await stat(join(root, ".complete")).catch(() => null)) return root;
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  await execa("mmdebstrap", ["--mode=root", "--variant=apt", `--include=${PACKAGES.join(",")}`, '--aptopt=APT::Install-Recommends "false"', "bookworm", root, "http://deb.debian.org/debian"], { stdio: "ignore" });
  await execa("touch", [join(root, ".complete")]);
  return root;
}

/** Runs `argv` inside the root; the host's /tmp is the root's /tmp, loopback is shared. */
export function runInRoot(root: string, argv: string[], options: { env?: Record<string, string> } = {}): ResultPromise<{ reject: false; env: Record<string, string> | undefined; extendEnv: false }> {
  const quoted = argv.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  const script = `set -e; mount --rbind /dev "$R/dev"; mount -t proc proc "$R/proc"; mount --bind /tmp "$R/tmp"; exec chroot "$R" ${quoted}`;
  return execa("unshare", ["--mount", "--propagation", "private", "sh", "-c", script], {
    reject: false,
    extendEnv: false,
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", R: root, ...options.env },
  });
}
