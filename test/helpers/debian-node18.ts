/**
 * Debian bookworm's own Node.js 18 (what the device image runs), with ostree, as a root tree made
 * once by mmdebstrap and kept under the cache dir; commands run chrooted into it in a private
 * mount namespace with /dev, /proc and the host's /tmp (where test fixtures live) bound in.
 */
import { spawn, type ChildProcess } from "node:child_process";
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

/** `unshare` arguments that run `argv` chrooted into the root: the host's /tmp is the root's /tmp, loopback is shared. */
function inRootArgs(argv: string[]): string[] {
  const quoted = argv.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  const script = `set -e; mount --rbind /dev "$R/dev"; mount -t proc proc "$R/proc"; mount --bind /tmp "$R/tmp"; exec chroot "$R" ${quoted}`;
  // --fork --kill-child: killing unshare kills what runs in the root.
  return ["--mount", "--propagation", "private", "--fork", "--kill-child", "sh", "-c", script];
}

const rootEnv = (root: string) => ({ PATH: "/usr/sbin:/usr/bin:/sbin:/bin", R: root });

/** Runs `argv` inside the root to completion. */
export function runInRoot(root: string, argv: string[]): ResultPromise<{ reject: false; env: Record<string, string>; extendEnv: false }> {
  return execa("unshare", inRootArgs(argv), { reject: false, extendEnv: false, env: rootEnv(root) });
}

/** Starts `argv` inside the root in the background (a daemon); kill the returned process to stop it. `output` pipes its stdout and stderr. */
export function spawnInRoot(root: string, argv: string[], options: { output?: boolean } = {}): ChildProcess {
  return spawn("unshare", inRootArgs(argv), { env: rootEnv(root), stdio: options.output ? ["ignore", "pipe", "pipe"] : "ignore" });
}
