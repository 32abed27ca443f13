/**
 * Builds the tree of a layered deployment from its signed base, never touching the running
 * system (docs/layering.md):
 *   1. a hardlinked checkout of the base in the repo's own tmp/ (same filesystem, so no copies);
 *   2. the Debian layout put back: /usr/etc to /etc, /var recreated from the base's tmpfiles
 *      entries, dpkg's database reachable at /var/lib/dpkg, no service may start;
 *   3. the checkout seen through `rofiles-fuse --copyup`, so a write to a hardlinked file copies
 *      it first instead of changing the repo object that the booted system shares;
 *   4. the base's own apt and dpkg run chrooted in it with the device's sources: removals, then
 *      replacements and installs, each simulated first and refused if it would change the base
 *      beyond what was asked;
 *   5. the OSTree layout again: /etc to /usr/etc, new /var content to the factory with its own
 *      tmpfiles.d file, users a maintainer script added to sysusers.d, /var emptied.
 */
import { copyFile, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, symlink, writeFile, chown, chmod } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import { parseDpkgStatus } from "../../shared/apt/dpkg-status.ts";
import { parseSimulation, type Simulation } from "../../shared/apt/simulate.ts";
import { prepareAptEtc, type PreparedAptEtc, type ServerAptSource } from "./apt-sources.ts";
import { LayeringError } from "./errors.ts";
import { ChrootCommandError, runInChroot, type ChrootBind } from "../../shared/chroot.ts";
import type { PackageEntry } from "../../shared/image/commit-metadata.ts";
import type { LayerOutcome, LayerRequest } from "../../shared/image/layer-metadata.ts";
import { DPKG_DATABASE, FACTORY, TMPFILES_CONF, TRANSIENT, VAR_LINKS } from "../../shared/image/ostree-layout.ts";
import { parseTmpfiles, renderTmpfiles, type VarEntry } from "../../shared/image/tmpfiles.ts";
import { runOstree } from "../../shared/ostree/exec.ts";
import { runProgram } from "../../shared/process/run.ts";
import { refusedPackage } from "./policy.ts";
import { inactiveRequests } from "./request.ts";
import { sysusersForNewAccounts } from "./sysusers.ts";

export const LAYERED_TMPFILES_CONF = "usr/lib/tmpfiles.d/zz-apt-ostree-layered.conf";
export const LAYERED_SYSUSERS_CONF = "usr/lib/sysusers.d/apt-ostree-layered.conf";

/** Where apt sees the device's layering state inside the chroot. */
const IN_ROOT = "/run/apt-ostree";

export { LayeringError };

export interface AssembleOptions {
  /** The sysroot's repo (bare): the checkout goes in its tmp/. */
  repo: string;
  /** The signed commit to build on. */
  base: string;
  request: LayerRequest;
  /** The device's APT configuration for layering (sources.list, sources.list.d/, trusted.gpg.d/), copied for each run: apt-sources.ts. */
  aptEtc: string;
  /** The server's APT repository, added to the sources when the base trusts it (apt-sources.ts). */
  serverSource?: ServerAptSource | null;
  /** Persistent state: lists/ (indices), archives/ (downloaded .debs), local/<sha256>.deb (local packages), etc/ (the run's APT configuration). */
  stateDir: string;
  /** `apt-get update` first; false for --cache-only. */
  refresh: boolean;
  log: Logger;
  signal?: AbortSignal;
}

export interface AssembledTree {
  /** Remove when done (the commit is made from `tree`). */
  workDir: string;
  tree: string;
  outcome: LayerOutcome;
  /** Every package in the tree, for the commit's package list. */
  packages: PackageEntry[];
}

export async function assembleLayer(options: AssembleOptions): Promise<AssembledTree> {
  const { repo, base, request, log } = options;
  await mkdir(join(repo, "tmp"), { recursive: true });
  const workDir = await mkdtemp(join(repo, "tmp", "apt-ostree-layer-"));
  const tree = join(workDir, "tree");
  const view = join(workDir, "view");
  try {
    await runOstree(["checkout", `--repo=${repo}`, "--require-hardlinks", base, tree], { signal: options.signal });
    const basePackages = await readPackages(tree);
    const baseByName = new Map(basePackages.map((p) => [p.name, p]));
    const baseVar = parseTmpfiles(await readFile(join(tree, TMPFILES_CONF), "utf8").catch(() => ""));
    const basePasswd = await readAccounts(tree);
    await prepareTree(tree, baseVar);
    // For the run only: no service may start (Debian's invoke-rc.d convention), and names resolve
    // as on this device, not as on the machine that composed the image.
    const restore = [
      await swapIn(workDir, tree, "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755),
      await swapIn(workDir, tree, "etc/resolv.conf", await readFile("/etc/resolv.conf", "utf8").catch(() => null), 0o644),
    ];
    await mkdir(view);
    const unmount = await mountCopyup(tree, view);
    try {
      await runApt(view, options, log);
    } finally {
      await unmount();
    }
    for (const undo of restore.reverse()) await undo();
    const packages = await readPackages(tree);
    const outcome = describeOutcome(request, baseByName, packages);
    await checkPlacement(tree, packages, baseByName);
    await restoreLayout(tree, baseVar, basePasswd);
    log.info({ event: "layering.assembled", base, layered: outcome.layeredPackages, removed: outcome.removedBasePackages.length, replaced: outcome.replacedBasePackages.length }, "layered tree assembled");
    return { workDir, tree, outcome, packages };
  } catch (error) {
    await rm(workDir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Work a killed agent left in the repo's tmp/: a checkout, maybe with its rofiles-fuse view still
 * mounted (its daemon died with the agent's process group, or not). Only for the one holding the
 * agent's state lock, so no layering of another process is running.
 */
export async function removeStaleLayerWork(repo: string, log: Logger): Promise<void> {
  const tmp = join(repo, "tmp");
  const names = await readdir(tmp).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith("apt-ostree-layer-"))) {
    await runProgram("umount", ["--lazy", join(tmp, name, "view")]).catch(() => null);
    await rm(join(tmp, name), { recursive: true, force: true }).catch((error: unknown) => log.warn({ event: "layering.stale.remove-failed", err: error }, `cannot remove ${name} from ${tmp}`));
    log.warn({ event: "layering.stale.removed", dir: name }, `removed the work of an interrupted package layering (${name})`);
  }
}

/** The Debian layout apt and dpkg expect, on top of the OSTree layout of the checkout. */
async function prepareTree(tree: string, baseVar: VarEntry[]): Promise<void> {
  await rename(join(tree, "usr/etc"), join(tree, "etc"));
  for (const entry of baseVar) {
    const path = join(tree, entry.path);
    await mkdir(dirname(path), { recursive: true });
    if (entry.kind === "dir") {
      await mkdir(path, { recursive: true });
      await chown(path, entry.uid, entry.gid);
      await chmod(path, entry.mode & 0o7777);
    } else if (entry.kind === "symlink") await symlink(entry.target, path);
    else {
      // A copy, never a link (the factory file is a repo object), with its owner and mode.
      const source = join(tree, FACTORY, entry.path);
      const info = await lstat(source);
      await copyFile(source, path);
      await chown(path, info.uid, info.gid);
      await chmod(path, info.mode & 0o7777);
    }
  }
  for (const [, varPath] of VAR_LINKS) await mkdir(join(tree, varPath), { recursive: true });
  await mkdir(join(tree, "var/tmp"), { recursive: true, mode: 0o1777 });
}

/**
 * Puts a new file at `path` for the run, the base's entry (if any) moved aside and back after.
 * Only directory entries change: a file of the checkout is a link to a repo object, and writing
 * into it would change the object the booted system shares. `content` null: nothing to swap.
 */
async function swapIn(workDir: string, tree: string, path: string, content: string | null, mode: number): Promise<() => Promise<void>> {
  if (content === null) return async () => undefined;
  const target = join(tree, path);
  const aside = join(workDir, "aside", path.replace(/\//g, "%"));
  await mkdir(dirname(aside), { recursive: true });
  const had = (await lstat(target).catch(() => null)) !== null;
  if (had) await rename(target, aside);
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, content, { mode });
  return async () => {
    await rm(target, { force: true });
    if (had) await rename(aside, target);
  };
}

/** `rofiles-fuse --copyup`: returns the unmount. */
async function mountCopyup(tree: string, view: string): Promise<() => Promise<void>> {
  // allow_other: maintainer scripts run steps as other users (runuser, setpriv); the kernel checks modes.
  const result = await runProgram("rofiles-fuse", ["--copyup", "-o", "allow_other,default_permissions", tree, view]).catch((error: Error) => ({ exitCode: null, stderr: error.message }));
  if (result.exitCode !== 0) throw new LayeringError(`cannot mount the layering tree with rofiles-fuse (is FUSE available? /dev/fuse and the fuse module): ${result.stderr.trim() || `exit ${result.exitCode}`}`);
  return async () => {
    // As root, umount takes a FUSE mount down (the image has no fusermount).
    const unmounted = await runProgram("umount", [view]).catch(() => null);
    if (unmounted?.exitCode !== 0) await runProgram("umount", ["--lazy", view]).catch(() => null);
  };
}

export const APT_ETC_IN_ROOT = `${IN_ROOT}/etc`;

export function aptBinds(options: Pick<AssembleOptions, "aptEtc" | "stateDir">): ChrootBind[] {
  return [
    { from: options.aptEtc, to: `${IN_ROOT}/etc`, readOnly: true },
    { from: join(options.stateDir, "lists"), to: `${IN_ROOT}/lists` },
    { from: join(options.stateDir, "archives"), to: `${IN_ROOT}/archives` },
    { from: join(options.stateDir, "local"), to: `${IN_ROOT}/local`, readOnly: true },
  ];
}

export const APT_OPTIONS = [
  `Dir::Etc::SourceList=${IN_ROOT}/etc/sources.list`,
  `Dir::Etc::SourceParts=${IN_ROOT}/etc/sources.list.d/`,
  `Dir::Etc::Trusted=${IN_ROOT}/etc/trusted.gpg`,
  `Dir::Etc::TrustedParts=${IN_ROOT}/etc/trusted.gpg.d/`,
  `Dir::State::Lists=${IN_ROOT}/lists/`,
  `Dir::Cache::Archives=${IN_ROOT}/archives/`,
  "Dir::Log=/tmp/",
  "APT::Install-Recommends=false",
  "APT::Sandbox::User=root",
  "Acquire::Languages=none",
  "Dpkg::Options::=--force-confdef",
  "Dpkg::Options::=--force-confold",
  "Dpkg::Use-Pty=false",
].flatMap((option) => ["-o", option]);

async function runApt(view: string, options: AssembleOptions, log: Logger): Promise<void> {
  const aptEtc = await prepareAptEtc({ aptEtc: options.aptEtc, stateDir: options.stateDir, serverSource: options.serverSource ?? null, chrootRoot: view, etcInRoot: APT_ETC_IN_ROOT });
  if (aptEtc.skipped.length > 0) log.warn({ event: "layering.apt.skipped", files: aptEtc.skipped }, `left out of ${options.aptEtc}: ${aptEtc.skipped.join(", ")} (not a regular sources or key file of at most 1 MiB)`);
  if (aptEtc.serverSource === "no-keyring") log.warn({ event: "layering.apt.no-keyring" }, "the server's APT repository is not offered: the base has no /usr/share/keyrings/apt-ostree-archive.gpg to verify it");
  try {
    await runAptWith(view, options, aptEtc, log);
  } finally {
    await aptEtc.remove();
  }
}

async function runAptWith(view: string, options: AssembleOptions, aptEtc: PreparedAptEtc, log: Logger): Promise<void> {
  const { request } = options;
  for (const dir of ["lists/partial", "archives/partial", "local"]) await mkdir(join(options.stateDir, dir), { recursive: true });
  const binds = aptBinds({ aptEtc: aptEtc.dir, stateDir: options.stateDir });
  const env = { DEBIAN_FRONTEND: "noninteractive", DEBCONF_NONINTERACTIVE_SEEN: "true" };
  const aptGet = async (args: string[], what: string, output: "stdout" | "all" = "stdout") => {
    log.debug({ event: "layering.apt", args }, what);
    try {
      return await runInChroot(view, ["apt-get", ...APT_OPTIONS, ...aptEtc.aptOptions, ...args], { what, binds, env, output, ...(options.signal ? { signal: options.signal } : {}) });
    } catch (error) {
      if (error instanceof ChrootCommandError) throw new LayeringError(`${what} failed (exit code ${error.exitCode ?? "?"}):\n${aptReason(error.output)}`, { cause: error });
      throw error;
    }
  };
  if (options.refresh) {
    const failures = indexFetchFailures(await aptGet(["update"], "fetching package indices (apt-get update)", "all"));
    // apt-get update exits 0 when a source failed (it keeps old indices): resolving against them
    // would hide the reason (an untrusted certificate, a bad signature) behind "no such package".
    if (failures.length > 0) throw new LayeringError(`fetching package indices (apt-get update) failed:\n${failures.join("\n")}`);
  }
  const base = new Map((await readPackages(view)).map((p) => [p.name, p]));

  if (request.baseRemovals.length > 0) {
    const removing = parseSimulation(await aptGet(["--simulate", "purge", ...request.baseRemovals], "resolving the base removals"));
    const beyond = removing.removals.filter((r) => !request.baseRemovals.includes(r.name));
    if (beyond.length > 0) throw new LayeringError(`removing ${request.baseRemovals.join(", ")} would also remove base packages ${beyond.map((r) => r.name).join(", ")}: remove those too, or keep it`);
    if (removing.installs.length > 0) throw new LayeringError(`removing ${request.baseRemovals.join(", ")} would install or change ${removing.installs.map((p) => p.name).join(", ")}: an override removes, it does not replace`);
    checkPolicy(removing, "remove");
    await aptGet(["--yes", "purge", ...request.baseRemovals], "removing base packages");
  }

  const locals = [...request.baseLocalReplacements, ...request.localPackages].map((p) => `${IN_ROOT}/local/${p.sha256}.deb`);
  const inactive = new Set(inactiveRequests(request, base));
  const names = request.packages.filter((name) => !inactive.has(name));
  if (names.length + locals.length === 0) return;
  const args = ["--no-install-recommends", "--allow-downgrades", "install", ...names, ...locals];
  const plan = parseSimulation(await aptGet(["--simulate", ...args], "resolving the packages to layer"));
  const replaceable = new Set(request.baseLocalReplacements.map((p) => p.name));
  const changed = plan.installs.filter((p) => p.replaces !== null && !replaceable.has(p.name));
  if (changed.length > 0) {
    throw new LayeringError(`layering ${[...names, ...request.localPackages.map((p) => p.name)].join(", ")} would change base packages (${changed.map((p) => `${p.name} ${p.replaces} -> ${p.version}`).join(", ")}): layering adds packages and does not upgrade the base; update the base, or use 'override replace'`);
  }
  if (plan.removals.length > 0) throw new LayeringError(`layering would remove base packages ${plan.removals.map((r) => r.name).join(", ")} (a conflict): use 'override remove' first if that is meant`);
  checkPolicy(plan, "install");
  await aptGet(["--yes", ...args], "installing the packages (apt-get install)");
}

/** APT's and dpkg's progress lines say nothing about a failure: the reason is in what is left (a script's own words, E: lines). */
const PROGRESS = /^(Reading |Building |Selecting |Preparing |Unpacking |Setting up |Processing |\(Reading database|Get:|Hit:|Ign:|Fetched |Need to get |After this |The following |Debconf|debconf: |  \S)/;

/** The lines of apt-get update's output that say a source could not be fetched or verified. */
export function indexFetchFailures(output: string): string[] {
  return output.split("\n").filter((line) => /^(W: (Failed to fetch|GPG error|The repository .* is not signed)|E: )/.test(line) && !/^W: Some index files failed/.test(line));
}

function aptReason(output: string): string {
  return output.split("\n").filter((line) => line.trim() && !PROGRESS.test(line)).slice(-15).join("\n");
}

function checkPolicy(plan: Simulation, verb: "install" | "remove"): void {
  for (const name of verb === "install" ? plan.installs.map((p) => p.name) : plan.removals.map((r) => r.name)) {
    const reason = refusedPackage(name);
    if (reason) throw new LayeringError(`cannot ${verb} '${name}' by layering: ${reason}`);
  }
}

function describeOutcome(request: LayerRequest, base: ReadonlyMap<string, PackageEntry>, after: PackageEntry[]): LayerOutcome {
  const afterByName = new Map(after.map((p) => [p.name, p]));
  const inactive = new Set(inactiveRequests(request, base));
  return {
    layeredPackages: [...request.packages.filter((n) => !inactive.has(n)), ...request.localPackages.map((p) => p.name)].sort(),
    removedBasePackages: [...base.values()].filter((p) => !afterByName.has(p.name)),
    replacedBasePackages: [...base.values()].flatMap((from) => {
      const to = afterByName.get(from.name);
      return to && to.version !== from.version ? [{ from, to }] : [];
    }),
  };
}

/**
 * Paths that live in /var on this system (/opt, /usr/local, ...) or belong to the bootloader
 * (/boot) cannot be layered: an OSTree deployment carries neither. Refused with the package.
 */
async function checkPlacement(tree: string, after: PackageEntry[], base: ReadonlyMap<string, PackageEntry>): Promise<void> {
  const added = after.filter((p) => base.get(p.name)?.version !== p.version);
  for (const pkg of added) {
    const list = await readFile(join(tree, DPKG_DATABASE, "info", `${pkg.name}.list`), "utf8").catch(() => readFile(join(tree, DPKG_DATABASE, "info", `${pkg.name}:${pkg.architecture}.list`), "utf8").catch(() => ""));
    for (const path of list.split("\n")) {
      const top = ["/boot", "/opt", "/usr/local", "/srv", "/home", "/root", "/mnt"].find((dir) => path.startsWith(`${dir}/`));
      if (!top) continue;
      const info = await lstat(join(tree, path)).catch(() => null);
      if (info && !info.isDirectory()) throw new LayeringError(`cannot layer '${pkg.name}': it installs ${path}, and ${top} ${top === "/boot" ? "belongs to the bootloader" : "lives in /var"} on an OSTree system, where a deployment cannot carry it`);
    }
  }
}

/** Back to the OSTree layout: what the commit may hold. */
async function restoreLayout(tree: string, baseVar: VarEntry[], basePasswd: Accounts): Promise<void> {
  for (const name of ["status-old", "available-old", "diversions-old", "statoverride-old", "lock", "lock-frontend"]) {
    await rm(join(tree, DPKG_DATABASE, name), { force: true });
  }
  const known = new Set(baseVar.map((e) => e.path));
  const entries: VarEntry[] = [];
  for await (const item of walk(tree, "var")) {
    const absolute = `/${item.path}`;
    if (absolute === "/var/lib/dpkg") continue;
    // Like compose: under /var/log, the apt caches and /var/tmp the directories stay (a daemon's log
    // directory), the files are the build's.
    const transient = TRANSIENT.some((prefix) => item.path.startsWith(`${prefix}/`));
    if (transient && !item.isDir) continue;
    if (item.isDir) {
      if (!known.has(absolute)) entries.push({ kind: "dir", path: absolute, mode: item.mode, uid: item.uid, gid: item.gid });
    } else if (item.isSymlink) {
      if (!known.has(absolute)) entries.push({ kind: "symlink", path: absolute, target: await readlink(join(tree, item.path)) });
    } else if (item.isFile) {
      const factory = join(tree, FACTORY, item.path);
      await mkdir(dirname(factory), { recursive: true });
      // A rename replaces the factory's directory entry: the repo object it linked to is untouched.
      await rename(join(tree, item.path), factory);
      if (!known.has(absolute)) entries.push({ kind: "file", path: absolute });
    }
  }
  await rm(join(tree, "var"), { recursive: true, force: true });
  await mkdir(join(tree, "var"));
  if (entries.length > 0) {
    await mkdir(dirname(join(tree, LAYERED_TMPFILES_CONF)), { recursive: true });
    await writeFile(join(tree, LAYERED_TMPFILES_CONF), renderTmpfiles(entries, "# Generated by apt-ostree package layering: /var content of layered packages, created at boot.\n"));
  }
  const sysusers = sysusersForNewAccounts(basePasswd, await readAccounts(tree, "etc"));
  if (sysusers) {
    await mkdir(dirname(join(tree, LAYERED_SYSUSERS_CONF)), { recursive: true });
    await writeFile(join(tree, LAYERED_SYSUSERS_CONF), sysusers);
  }
  await rename(join(tree, "etc"), join(tree, "usr/etc"));
}

interface Accounts {
  passwd: string;
  group: string;
}

async function readAccounts(tree: string, etc = "usr/etc"): Promise<Accounts> {
  return {
    passwd: await readFile(join(tree, etc, "passwd"), "utf8").catch(() => ""),
    group: await readFile(join(tree, etc, "group"), "utf8").catch(() => ""),
  };
}

async function readPackages(root: string): Promise<PackageEntry[]> {
  const status = await readFile(join(root, DPKG_DATABASE, "status"), "utf8").catch(() => {
    throw new LayeringError(`the base has no dpkg database at /${DPKG_DATABASE}: it was not composed by apt-ostree`);
  });
  return parseDpkgStatus(status);
}

interface WalkItem {
  path: string;
  isDir: boolean;
  isFile: boolean;
  isSymlink: boolean;
  mode: number;
  uid: number;
  gid: number;
}

/** Depth-first, sorted, parents before children; does not follow symlinks. */
async function* walk(root: string, path: string): AsyncGenerator<WalkItem> {
  for (const name of (await readdir(join(root, path))).sort()) {
    const child = `${path}/${name}`;
    const info = await lstat(join(root, child));
    yield { path: child, isDir: info.isDirectory(), isFile: info.isFile(), isSymlink: info.isSymbolicLink(), mode: info.mode, uid: info.uid, gid: info.gid };
    if (info.isDirectory()) yield* walk(root, child);
  }
}
