/** Pure parser of dpkg's status file: the installed packages, sorted by name. */
export interface InstalledPackage {
  name: string;
  version: string;
  architecture: string;
}

export function parseDpkgStatus(text: string): InstalledPackage[] {
  const packages: InstalledPackage[] = [];
  for (const paragraph of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const match of paragraph.matchAll(/^([A-Za-z0-9-]+):[ \t]*(.*)$/gm)) fields.set(match[1]!, match[2]!.trim());
    const status = fields.get("Status") ?? "";
    if (!status.endsWith(" installed") || !fields.has("Package")) continue;
    packages.push({ name: fields.get("Package")!, version: fields.get("Version") ?? "", architecture: fields.get("Architecture") ?? "" });
  }
  return packages.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.architecture < b.architecture ? -1 : 1));
}
