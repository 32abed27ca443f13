/** GET /api/v1/releases: what each channel currently publishes, read from the signed manifests. */
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { diffPackages, type PackageDiff } from "../../../shared/image/package-diff.ts";
import { commitHistory } from "../../publish/history.ts";
import { SignedManifestSchema, ManifestSchema, type Manifest } from "../../../shared/wire/manifest.ts";

export interface Release {
  ref: string;
  channel: string;
  version: string;
  sequence: number;
  commit: string;
  architecture: string;
  issued: string;
  expires: string;
  manifest: string;
  deltas: Array<{ from: string | null; fromVersion: string | null; size: number }>;
  /** The version this one was composed after (the commit's parent), and the package changes since. */
  previousVersion: string | null;
  packageDiff: PackageDiff | null;
}

export async function listReleases(repo: string): Promise<Release[]> {
  const root = join(repo, "channels");
  const files = await listJsonFiles(root);
  const releases: Release[] = [];
  for (const file of files.sort()) {
    const manifest: Manifest = ManifestSchema.parse(SignedManifestSchema.parse(JSON.parse(await readFile(file, "utf8"))).manifest);
    releases.push({
      ref: manifest.ref,
      channel: manifest.channel,
      version: manifest.version,
      sequence: manifest.sequence,
      commit: manifest.commit,
      architecture: manifest.architecture,
      issued: manifest.issued,
      expires: manifest.expires,
      manifest: relative(repo, file),
      deltas: manifest.deltas.map((d) => ({ from: d.from, fromVersion: d.fromVersion, size: d.size })),
      ...(await changesSinceParent(repo, manifest.commit)),
    });
  }
  return releases;
}

/** The parent's version and the package diff from it; nulls for a first version or a parent no longer in the repo. */
async function changesSinceParent(repo: string, commit: string): Promise<{ previousVersion: string | null; packageDiff: PackageDiff | null }> {
  const [current, parent] = await commitHistory(repo, commit, 1).catch(() => []);
  if (!current || !parent) return { previousVersion: null, packageDiff: null };
  return { previousVersion: parent.info.version, packageDiff: diffPackages(parent.info.packages, current.info.packages) };
}

async function listJsonFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const files: string[] = [];
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await listJsonFiles(path)));
    else if (entry.isFile() && entry.name.endsWith(".json")) files.push(path);
  }
  return files;
}
