/**
 * The deployments of a sysroot in rpm-ostree's terms (booted, staged, pending, rollback), from
 * `ostree admin status`, the root directory and the commit objects in the sysroot's repo.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
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
  /** The running system's root: the booted deployment is the directory that is this one. */
  rootDir: string;
}

export function sysrootRepo(sysroot: string): string {
  return join(sysroot, "ostree", "repo");
}

/**
 * `checksum.serial` of the deployment whose directory is the running root, like ostree's own
 * check (same device and inode), or null when this sysroot is not what the system booted.
 */
export async function bootedFromRoot(facts: SysrootFacts, entries: AdminStatusEntry[]): Promise<string | null> {
  const root = await stat(facts.rootDir).catch(() => null);
  if (!root) return null;
  for (const entry of entries) {
    const name = `${entry.checksum}.${entry.serial}`;
    const dir = await stat(join(facts.sysroot, "ostree", "deploy", entry.osname, "deploy", name)).catch(() => null);
    if (dir && dir.dev === root.dev && dir.ino === root.ino) return name;
  }
  return null;
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
  return classifyDeployments(entries, await bootedFromRoot(facts, entries), timestamps);
}
