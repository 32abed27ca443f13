/**
 * The admin's layering request and its edits, with rpm-ostree's rules and words: `install`
 * refuses a package already requested (unless --idempotent) or already in the base (unless
 * --allow-inactive), `uninstall` refuses one not requested, and overrides apply to base packages
 * only. Pure: the caller reads the request from the default deployment and writes the result.
 */
import { AptOstreeError } from "../../shared/errors.ts";
import type { PackageEntry } from "../../shared/image/commit-metadata.ts";
import type { LayerRequest, LocalPackage } from "../../shared/image/layer-metadata.ts";

/**
 * Debian Policy 5.6.1: lower case letters, digits, '+', '-' and '.', at least two, starting
 * alphanumeric; not ending in '-' or '.' here, so apt-get never reads a trailing '-' as "remove"
 * (a trailing '+' is a real name's, g++, which apt looks up before reading it as "install").
 */
export const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]{0,98}[a-z0-9+]$/;
/** One request line holds at most this many names: a longer list is a mistake or an attack. */
export const MAX_REQUEST_ENTRIES = 256;

export class LayerRequestError extends AptOstreeError {
  constructor(message: string) {
    super("E_LAYER_REQUEST", message);
  }
}

export interface InstallOptions {
  /** Skip a package already requested instead of failing (rpm-ostree's --idempotent). */
  idempotent: boolean;
  /** Record a package the base already has, as an inactive request (rpm-ostree's --allow-inactive). */
  allowInactive: boolean;
}

export interface RequestEdit {
  request: LayerRequest;
  /** false when the request is what it was: nothing to build ("No change."). */
  changed: boolean;
}

export function checkPackageNames(names: readonly string[]): void {
  if (names.length > MAX_REQUEST_ENTRIES) throw new LayerRequestError(`at most ${MAX_REQUEST_ENTRIES} packages at once, not ${names.length}`);
  for (const name of names) {
    if (!PACKAGE_NAME.test(name)) throw new LayerRequestError(`'${name.slice(0, 100)}' is not a Debian package name (lower case letters, digits, '+', '-' and '.')`);
  }
}

export function installPackages(request: LayerRequest, names: readonly string[], base: ReadonlyMap<string, PackageEntry>, options: InstallOptions): RequestEdit {
  checkPackageNames(names);
  const packages = [...request.packages];
  for (const name of new Set(names)) {
    if (packages.includes(name)) {
      if (options.idempotent) continue;
      throw new LayerRequestError(`Package '${name}' is already requested`);
    }
    if (request.localPackages.some((p) => p.name === name)) {
      if (options.idempotent) continue;
      throw new LayerRequestError(`Package '${name}' is already layered (from a local .deb)`);
    }
    const inBase = base.get(name);
    if (inBase && !request.baseRemovals.includes(name) && !options.allowInactive) {
      throw new LayerRequestError(`"${name}" is already provided by: ${inBase.name} ${inBase.version}. Use --allow-inactive to explicitly require it.`);
    }
    packages.push(name);
  }
  return edited(request, { ...request, packages: packages.sort() });
}

export function installLocalPackages(request: LayerRequest, debs: readonly LocalPackage[], base: ReadonlyMap<string, PackageEntry>, options: InstallOptions): RequestEdit {
  checkPackageNames(debs.map((d) => d.name));
  const locals = [...request.localPackages];
  for (const deb of debs) {
    const same = locals.find((p) => p.name === deb.name);
    if (same || request.packages.includes(deb.name)) {
      if (options.idempotent && same?.sha256 === deb.sha256) continue;
      throw new LayerRequestError(same ? `Package '${deb.name}' is already layered` : `Package/capability '${deb.name}' is already requested`);
    }
    if (base.has(deb.name)) throw new LayerRequestError(`'${deb.name}' is a base package: to replace it with this .deb, use 'override replace'`);
    locals.push(deb);
  }
  return edited(request, { ...request, localPackages: locals.sort(byName) });
}

/** `uninstall`: drops requested names and local packages (by name). */
export function uninstallPackages(request: LayerRequest, names: readonly string[], options: { idempotent: boolean }): RequestEdit {
  checkPackageNames(names);
  let packages = [...request.packages];
  let locals = [...request.localPackages];
  for (const name of new Set(names)) {
    if (packages.includes(name)) packages = packages.filter((p) => p !== name);
    else if (locals.some((p) => p.name === name)) locals = locals.filter((p) => p.name !== name);
    else if (!options.idempotent) throw new LayerRequestError(`Package/capability '${name}' is not currently requested`);
  }
  return edited(request, { ...request, packages, localPackages: locals });
}

export function uninstallAll(request: LayerRequest): RequestEdit {
  return edited(request, { ...request, packages: [], localPackages: [] });
}

export function overrideRemove(request: LayerRequest, names: readonly string[], base: ReadonlyMap<string, PackageEntry>): RequestEdit {
  checkPackageNames(names);
  const removals = [...request.baseRemovals];
  for (const name of new Set(names)) {
    if (!base.has(name)) throw new LayerRequestError(`Package '${name}' is not in the base: 'override remove' takes base packages ('uninstall' takes layered ones)`);
    if (removals.includes(name) || request.baseLocalReplacements.some((p) => p.name === name)) throw new LayerRequestError(`Override already exists for package '${name}'`);
    removals.push(name);
  }
  return edited(request, { ...request, baseRemovals: removals.sort() });
}

export function overrideReplace(request: LayerRequest, debs: readonly LocalPackage[], base: ReadonlyMap<string, PackageEntry>): RequestEdit {
  checkPackageNames(debs.map((d) => d.name));
  const replacements = [...request.baseLocalReplacements];
  for (const deb of debs) {
    if (!base.has(deb.name)) throw new LayerRequestError(`Package '${deb.name}' is not in the base: 'override replace' takes base packages ('install' adds new ones)`);
    if (request.baseRemovals.includes(deb.name) || replacements.some((p) => p.name === deb.name)) throw new LayerRequestError(`Override already exists for package '${deb.name}'`);
    replacements.push(deb);
  }
  return edited(request, { ...request, baseLocalReplacements: replacements.sort(byName) });
}

/** `override reset NAME...`, or every override with `all`. */
export function overrideReset(request: LayerRequest, names: readonly string[] | "all"): RequestEdit {
  if (names === "all") return edited(request, { ...request, baseRemovals: [], baseLocalReplacements: [] });
  checkPackageNames(names);
  let removals = [...request.baseRemovals];
  let replacements = [...request.baseLocalReplacements];
  for (const name of new Set(names)) {
    if (removals.includes(name)) removals = removals.filter((n) => n !== name);
    else if (replacements.some((p) => p.name === name)) replacements = replacements.filter((p) => p.name !== name);
    else throw new LayerRequestError(`No overrides for package '${name}'`);
  }
  return edited(request, { ...request, baseRemovals: removals, baseLocalReplacements: replacements });
}

/** Requested names the base already provides (and does not have removed): recorded, nothing layered. */
export function inactiveRequests(request: LayerRequest, base: ReadonlyMap<string, PackageEntry>): string[] {
  return request.packages.filter((name) => base.has(name) && !request.baseRemovals.includes(name));
}

function edited(before: LayerRequest, after: LayerRequest): RequestEdit {
  return { request: after, changed: JSON.stringify(before) !== JSON.stringify(after) };
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
