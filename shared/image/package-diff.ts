/** Pure package diff between two commits' package lists, in `rpm-ostree db diff`'s terms. */
import { compareDebianVersions } from "./debian-version.ts";
import type { PackageEntry } from "./commit-metadata.ts";

export interface VersionChange {
  name: string;
  architecture: string;
  from: string;
  to: string;
}

export interface PackageDiff {
  upgraded: VersionChange[];
  downgraded: VersionChange[];
  removed: PackageEntry[];
  added: PackageEntry[];
}

export function diffPackages(from: PackageEntry[], to: PackageEntry[]): PackageDiff {
  const key = (p: PackageEntry) => `${p.name}:${p.architecture}`;
  const before = new Map(from.map((p) => [key(p), p]));
  const after = new Map(to.map((p) => [key(p), p]));
  const diff: PackageDiff = { upgraded: [], downgraded: [], removed: [], added: [] };
  for (const [id, old] of before) {
    const current = after.get(id);
    if (!current) diff.removed.push(old);
    else if (current.version !== old.version) {
      const change = { name: old.name, architecture: old.architecture, from: old.version, to: current.version };
      (compareDebianVersions(current.version, old.version) > 0 ? diff.upgraded : diff.downgraded).push(change);
    }
  }
  for (const [id, pkg] of after) if (!before.has(id)) diff.added.push(pkg);
  const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  for (const list of Object.values(diff)) (list as Array<{ name: string }>).sort(byName);
  return diff;
}

/** rpm-ostree's text shape: sections with two-space indented lines; empty sections left out. */
export function renderPackageDiff(diff: PackageDiff): string {
  const lines: string[] = [];
  const section = (title: string, items: string[]) => {
    if (items.length === 0) return;
    lines.push(`${title}:`, ...items.map((item) => `  ${item}`));
  };
  section("Upgraded", diff.upgraded.map((c) => `${c.name} ${c.from} -> ${c.to}`));
  section("Downgraded", diff.downgraded.map((c) => `${c.name} ${c.from} -> ${c.to}`));
  section("Removed", diff.removed.map((p) => `${p.name}-${p.version}.${p.architecture}`));
  section("Added", diff.added.map((p) => `${p.name}-${p.version}.${p.architecture}`));
  if (lines.length === 0) lines.push("No package changes.");
  return `${lines.join("\n")}\n`;
}
