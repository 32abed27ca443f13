/**
 * Parsers of `apt-get --simulate` output, shared by compose (resolve a recipe's package set) and
 * the device's package layering (what an install would add, upgrade or remove in the base).
 */

export interface SimulatedPackage {
  name: string;
  version: string;
  architecture: string;
}

export interface SimulatedInstall extends SimulatedPackage {
  /** The installed version this one replaces: an upgrade or downgrade of a package already there. */
  replaces: string | null;
}

export interface SimulatedRemoval {
  name: string;
  version: string | null;
}

export interface Simulation {
  installs: SimulatedInstall[];
  removals: SimulatedRemoval[];
}

/** `Inst name [old] (version suite [arch])` and `Remv|Purg name [version]` lines of a simulated run. */
export function parseSimulation(stdout: string): Simulation {
  const installs: SimulatedInstall[] = [];
  for (const match of stdout.matchAll(/^Inst (\S+) (?:\[(\S+)\] )?\((\S+) .*\[(\S+)\]\)/gm)) {
    installs.push({ name: match[1]!, replaces: match[2] ?? null, version: match[3]!, architecture: match[4]! });
  }
  const removals: SimulatedRemoval[] = [];
  // `purge` prints Purg where `remove` prints Remv.
  for (const match of stdout.matchAll(/^(?:Remv|Purg) (\S+)(?: \[(\S+)\])?/gm)) removals.push({ name: match[1]!, version: match[2] ?? null });
  return { installs, removals };
}

/** The packages a simulated install would unpack, with their versions. */
export function parseSimulatedInstalls(stdout: string): SimulatedPackage[] {
  return parseSimulation(stdout).installs.map(({ name, version, architecture }) => ({ name, version, architecture }));
}

/** Package names in apt-get's "Unable to locate package" / "has no installation candidate" errors. */
export function parseMissingPackages(stderr: string): string[] {
  const names = new Set<string>();
  for (const match of stderr.matchAll(/^E: (?:Unable to locate package (\S+)|Package '([^']+)' has no installation candidate)/gm)) {
    names.add((match[1] ?? match[2])!);
  }
  return [...names];
}
