/**
 * The deployments of a sysroot in rpm-ostree's terms (booted, staged, pending, rollback), from
 * `ostree admin status`, the kernel command line and the commit objects in the sysroot's repo.
 */
import { readFile, realpath } from "node:fs/promises";
import { basename, join } from "node:path";
import { runOstree } from "../../shared/ostree/exec.ts";
import { parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { readCommitObject } from "../../shared/ostree/repo.ts";
import { parseAdminStatus, type AdminStatusEntry } from "./admin-status.ts";

export interface Deployment {
  /** `osname-checksum.serial`, like rpm-ostree's `id`. */
  id: string;
  osname: string;
  checksum: string;
  serial: number;
  version: string | null;
  /** The origin refspec, e.g. `debian/bookworm/qemu-amd64/appliance-minimal`. */
  origin: string | null;
  /** Commit time, seconds since the epoch. */
  timestamp: number | null;
  booted: boolean;
  staged: boolean;
  /** The next boot starts it and it is not the booted one. */
  pending: boolean;
  /** What `rollback` (or a bootloader fallback) would boot. */
  rollback: boolean;
  pinned: boolean;
}

export interface SysrootFacts {
  sysroot: string;
  /** Kernel command line of this boot; its `ostree=` names the booted deployment. */
  cmdline: string;
}

export function sysrootRepo(sysroot: string): string {
  return join(sysroot, "ostree", "repo");
}

/** `checksum.serial` of the deployment `ostree=` points at, or null when the kernel was not booted from this sysroot. */
export async function bootedFromCmdline(facts: SysrootFacts): Promise<string | null> {
  const arg = facts.cmdline.split(/\s+/).find((word) => word.startsWith("ostree="));
  if (!arg) return null;
  const target = await realpath(join(facts.sysroot, arg.slice("ostree=".length))).catch(() => null);
  return target ? basename(target) : null;
}

/** Pure: rpm-ostree's flags from ostree's boot-ordered list and the booted deployment. */
export function classifyDeployments(entries: AdminStatusEntry[], bootedName: string | null, timestamps: Map<string, number | null>): Deployment[] {
  const bootedIndex = entries.findIndex((e) => e.booted || `${e.checksum}.${e.serial}` === bootedName);
  const rollbackIndex = bootedIndex >= 0 ? entries.findIndex((e, i) => i > bootedIndex && e.marker !== "staged") : entries.length > 1 ? 1 : -1;
  return entries.map((entry, index) => ({
    id: `${entry.osname}-${entry.checksum}.${entry.serial}`,
    osname: entry.osname,
    checksum: entry.checksum,
    serial: entry.serial,
    version: entry.version,
    origin: entry.refspec,
    timestamp: timestamps.get(entry.checksum) ?? null,
    booted: index === bootedIndex,
    staged: entry.marker === "staged",
    pending: bootedIndex > 0 && index < bootedIndex,
    rollback: index === rollbackIndex,
    pinned: entry.pinned,
  }));
}

export async function readDeployments(facts: SysrootFacts): Promise<Deployment[]> {
  const entries = parseAdminStatus(await runOstree(["admin", "status", `--sysroot=${facts.sysroot}`]));
  const timestamps = new Map<string, number | null>();
  for (const entry of entries) {
    const bytes = await readCommitObject(sysrootRepo(facts.sysroot), entry.checksum).catch(() => null);
    timestamps.set(entry.checksum, bytes ? parseCommitObject(bytes).timestamp : null);
  }
  return classifyDeployments(entries, await bootedFromCmdline(facts), timestamps);
}

export async function readCmdline(path: string): Promise<string> {
  return (await readFile(path, "utf8").catch(() => "")).trim();
}
