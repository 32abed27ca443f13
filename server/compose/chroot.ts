/**
 * Runs a command inside a rootfs with /dev, /proc and /sys mounted, in a private mount
 * namespace so every mount disappears with the process, even when it is killed.
 * Foreign architectures run through qemu-user-static's binfmt handlers.
 */
import { execa } from "execa";
import { AptOstreeError } from "../../shared/errors.ts";

export class ChrootCommandError extends AptOstreeError {
  constructor(what: string, exitCode: number | undefined, output: string) {
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
  'exec chroot "$root" "$@"',
].join("\n");

export interface ChrootRunOptions {
  /** Text fed to the command's stdin (e.g. a postprocess script for `/bin/sh -e`). */
  input?: string;
  env?: Record<string, string>;
  /** Human name of the step, for the error message. */
  what: string;
}

export async function runInChroot(root: string, argv: string[], options: ChrootRunOptions): Promise<string> {
  const result = await execa("unshare", ["--mount", "--propagation", "private", "sh", "-c", MOUNT_AND_CHROOT, "sh", root, ...argv], {
    input: options.input ?? "",
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C.UTF-8", ...options.env },
    extendEnv: false,
    all: true,
    reject: false,
  });
  if (result.exitCode !== 0) throw new ChrootCommandError(options.what, result.exitCode, result.all ?? "");
  return result.stdout;
}
