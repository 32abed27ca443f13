/**
 * The deployments of a sysroot in rpm-ostree's terms (booted, staged, pending, rollback), from
 * `ostree admin status`, the root directory and the commit objects in the sysroot's repo.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { runOstree } from "../../shared/ostree/exec.ts";
import { parseCommitObject, type CommitObject } from "../../shared/ostree/commit-object.ts";
import { readCommitObject } from "../../shared/ostree/repo.ts";
import { parseAdminStatus, type AdminStatusEntry } from "./admin-status.ts";
import { baseOf, layeredNames, readLayerInfo } from "../../shared/image/layer-metadata.ts";

export interface Deployment {
  /** `osname-checksum.serial`, like rpm-ostree's `id`. */
  id: string;
  osname: string;
  checksum: string;
  /** The signed release under it: its parent for a package layer (docs/layering.md), else the checksum itself. */
  base: string;
  /** A package layer's outcome by name: layered, removed from and replaced in the base. */
  layered?: { packages: string[]; removed: string[]; replaced: string[] };
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
export function classifyDeployments(entries: AdminStatusEntry[], bootedName: string | null, timestamps: Map<string, number | null>, bases: ReadonlyMap<string, string> = new Map(), layers: ReadonlyMap<string, Deployment["layered"]> = new Map()): Deployment[] {
  const bootedIndex = entries.findIndex((e) => e.booted || `${e.checksum}.${e.serial}` === bootedName);
  const rollbackIndex = bootedIndex >= 0 ? entries.findIndex((e, i) => i > bootedIndex && e.marker !== "staged") : entries.length > 1 ? 1 : -1;
  return entries.map((entry, index) => ({
    id: `${entry.osname}-${entry.checksum}.${entry.serial}`,
    osname: entry.osname,
    checksum: entry.checksum,
    base: bases.get(entry.checksum) ?? entry.checksum,
    ...(layers.get(entry.checksum) ? { layered: layers.get(entry.checksum)! } : {}),
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

/** Pure: which deployments `deployRetaining` undeploys: all but the default (index 0), the booted one and the one after it; highest index first. */
export function prunableIndices(deployments: Array<Pick<Deployment, "booted">>): number[] {
  const booted = deployments.findIndex((d) => d.booted);
  const keep = new Set(booted < 0 ? [0, 1] : [0, booted, booted + 1]);
  return deployments.map((_, i) => i).filter((i) => !keep.has(i)).reverse();
}

/** The deployment an `ostree admin deploy` of a commit just added. */
export interface AddedDeployment {
  osname: string;
  checksum: string;
  version: string | null;
  origin: string | null;
  timestamp: number | null;
  staged: boolean;
  /** The signed release under a package layer; default: the checksum. */
  base?: string;
  layered?: Deployment["layered"];
}

/**
 * Pure: the list `ostree admin status` shows once a deploy put `added` first, from the list
 * before it: ostree's serial (one past the highest of the same commit), a staged deployment
 * replacing an earlier staged one, a plain deploy pruned as deployRetaining prunes, then
 * rpm-ostree's flags as classifyDeployments gives them. It spares the agent's "staged" report a
 * run of `ostree admin status` (~50 ms); the agent reads the real list right after and reports
 * again if they differ.
 */
export function deploymentsAfterDeploy(before: Deployment[], added: AddedDeployment): Deployment[] {
  const serial = Math.max(-1, ...before.filter((d) => d.osname === added.osname && d.checksum === added.checksum).map((d) => d.serial)) + 1;
  const toEntry = (d: Deployment): AdminStatusEntry => ({ osname: d.osname, checksum: d.checksum, serial: d.serial, booted: d.booted, marker: d.staged ? "staged" : null, version: d.version, refspec: d.origin, pinned: d.pinned });
  let entries: AdminStatusEntry[] = [
    { osname: added.osname, checksum: added.checksum, serial, booted: false, marker: added.staged ? "staged" : null, version: added.version, refspec: added.origin, pinned: false },
    ...before.filter((d) => !d.staged).map(toEntry),
  ];
  if (!added.staged) {
    const doomed = new Set(prunableIndices(entries));
    entries = entries.filter((_, i) => !doomed.has(i));
  }
  const timestamps = new Map<string, number | null>([...before.map((d) => [d.checksum, d.timestamp] as const), [added.checksum, added.timestamp]]);
  const booted = before.find((d) => d.booted);
  const bases = new Map<string, string>([...before.map((d) => [d.checksum, d.base] as const), [added.checksum, added.base ?? added.checksum]]);
  const layers = new Map<string, Deployment["layered"]>([...before.filter((d) => d.layered).map((d) => [d.checksum, d.layered] as const), ...(added.layered ? [[added.checksum, added.layered] as const] : [])]);
  return classifyDeployments(entries, booted ? `${booted.checksum}.${booted.serial}` : null, timestamps, bases, layers);
}

function layerOutcome(commit: CommitObject): Deployment["layered"] | null {
  try {
    const outcome = readLayerInfo(commit)?.outcome;
    return outcome ? layeredNames(outcome) : null;
  } catch {
    return null;
  }
}

/** A layer this agent cannot read (a newer agent's) still stands on its parent. */
function baseOrParent(checksum: string, commit: CommitObject): string {
  try {
    return baseOf(checksum, commit);
  } catch {
    return commit.parent ?? checksum;
  }
}

export async function readDeployments(facts: SysrootFacts): Promise<Deployment[]> {
  const entries = parseAdminStatus(await runOstree(["admin", "status", `--sysroot=${facts.sysroot}`]));
  const timestamps = new Map<string, number | null>();
  const bases = new Map<string, string>();
  const layers = new Map<string, Deployment["layered"]>();
  for (const entry of entries) {
    const bytes = await readCommitObject(sysrootRepo(facts.sysroot), entry.checksum).catch(() => null);
    const commit = bytes ? parseCommitObject(bytes) : null;
    timestamps.set(entry.checksum, commit?.timestamp ?? null);
    if (!commit) continue;
    bases.set(entry.checksum, baseOrParent(entry.checksum, commit));
    const layer = layerOutcome(commit);
    if (layer) layers.set(entry.checksum, layer);
  }
  return classifyDeployments(entries, await bootedFromRoot(facts, entries), timestamps, bases, layers);
}
