/**
 * Runs a command inside a rootfs with /dev, /proc and /sys mounted, in a private mount
 * namespace so every mount disappears with the process, even when it is killed. Used by compose
 * (maintainer scripts, the initramfs) and by the device's package layering.
 * Foreign architectures run through qemu-user-static's binfmt handlers.
 */
import { AptOstreeError } from "./errors.ts";
import { runProgram } from "./process/run.ts";

export class ChrootCommandError extends AptOstreeError {
  constructor(
    readonly what: string,
    readonly exitCode: number | undefined,
    /** stdout and stderr together, for a caller that knows which lines tell the reason. */
    readonly output: string,
  ) {
    const tail = output.trim().split("\n").slice(-5).join("\n");
    super("E_CHROOT", `${what} failed (exit code ${exitCode ?? "?"})${tail ? `:\n${tail}` : ""}`);
  }
}

const MOUNT_AND_CHROOT = [
  'set -e; root="$1"; shift',
  'mount --rbind /dev "$root/dev"',
  'mount -t proc proc "$root/proc"',
  'mount --rbind /sys "$root/sys"',
  'mount -t tmpfs tmpfs "$root/run"',
  'mount -t tmpfs tmpfs "$root/tmp"',
  // Binds come as "<from>\t<to inside the root>\t<ro|rw>" lines in $BINDS, after /run and /tmp so they may land there.
  'printf "%s\\n" "$BINDS" | while IFS="\t" read -r from to mode; do',
  '  [ -n "$from" ] || continue',
  '  if [ -d "$from" ]; then mkdir -p "$root$to"; else mkdir -p "$(dirname "$root$to")"; [ -e "$root$to" ] || : > "$root$to"; fi',
  '  mount --bind "$from" "$root$to"',
  '  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$root$to"; fi',
  'done',
  'exec chroot "$root" "$@"',
].join("\n");

/** A host path made visible inside the root for the command's run. */
export interface ChrootBind {
  from: string;
  /** Absolute path inside the root. */
  to: string;
  readOnly?: boolean;
}

export interface ChrootRunOptions {
  /** Text fed to the command's stdin (e.g. a postprocess script for `/bin/sh -e`). */
  input?: string;
  env?: Record<string, string>;
  /** Human name of the step, for the error message. */
  what: string;
  binds?: ChrootBind[];
  signal?: AbortSignal;
  /** What to return: stdout (default), or stdout and stderr interleaved (apt's warnings go to stderr). */
  output?: "stdout" | "all";
}

export async function runInChroot(root: string, argv: string[], options: ChrootRunOptions): Promise<string> {
  // node:child_process rather than execa: the device agent runs this too (package layering) and stays lean.
  const result = await runProgram("unshare", ["--mount", "--propagation", "private", "sh", "-c", MOUNT_AND_CHROOT, "sh", root, ...argv], {
    input: options.input ?? "",
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C.UTF-8", ...options.env, BINDS: bindLines(options.binds ?? []) },
    cleanEnv: true,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (result.exitCode !== 0) throw new ChrootCommandError(options.what, result.exitCode ?? undefined, result.all);
  return options.output === "all" ? result.all : result.stdout;
}

function bindLines(binds: ChrootBind[]): string {
  for (const bind of binds) {
    if (!bind.to.startsWith("/") || /[\t\n]/.test(bind.from + bind.to)) throw new ChrootCommandError(`binding ${bind.from} at ${bind.to}`, undefined, "a bind needs an absolute target and no tabs or newlines");
  }
  return binds.map((b) => `${b.from}\t${b.to}\t${b.readOnly ? "ro" : "rw"}`).join("\n");
}
