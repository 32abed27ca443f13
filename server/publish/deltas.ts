/**
 * Self-contained static deltas, generated into the repo's tmp/ and renamed into `deltas/` as a
 * whole directory, so a delta directory that exists is complete. The manifest lists each file
 * with its size and sha256.
 */
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fsyncPath } from "../../shared/fs/atomic-write.ts";
import { sha256OfFile } from "../../shared/verify/delta-file.ts";
import { generateStaticDelta, staticDeltaDir } from "../../shared/ostree/static-delta.ts";
import type { Delta, DeltaFile } from "../../shared/wire/manifest.ts";

export interface EnsureDeltaOptions {
  repo: string;
  from: string | null;
  fromVersion: string | null;
  to: string;
  signal?: AbortSignal;
}

/** Generates the delta unless it exists; returns its manifest entry and whether it was new. */
export async function ensureDelta(options: EnsureDeltaOptions): Promise<{ delta: Delta; generated: boolean }> {
  const relativeDir = staticDeltaDir(options.from, options.to);
  const finalDir = join(options.repo, relativeDir);
  let generated = false;
  if (!(await stat(join(finalDir, "superblock")).catch(() => null))) {
    const staging = join(options.repo, "tmp", `apt-ostree-delta-${process.pid}-${relativeDir.replace(/\//g, "_")}`);
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging, { recursive: true });
    await generateStaticDelta({ repo: options.repo, from: options.from, to: options.to, filename: join(staging, "superblock"), signal: options.signal });
    for (const name of await readdir(staging)) await fsyncPath(join(staging, name));
    await mkdir(dirname(finalDir), { recursive: true });
    await rm(finalDir, { recursive: true, force: true }); // a directory without superblock is debris
    await rename(staging, finalDir);
    await fsyncPath(dirname(finalDir));
    generated = true;
  }
  const files = await describeFiles(options.repo, relativeDir);
  return {
    delta: { from: options.from, fromVersion: options.fromVersion, size: files.reduce((sum, f) => sum + f.size, 0), files },
    generated,
  };
}

async function describeFiles(repo: string, relativeDir: string): Promise<DeltaFile[]> {
  // superblock first: a client fetches it before the parts it names.
  const names = (await readdir(join(repo, relativeDir))).sort((a, b) => (a === "superblock" ? -1 : b === "superblock" ? 1 : Number(a) - Number(b)));
  const files: DeltaFile[] = [];
  for (const name of names) {
    const path = join(repo, relativeDir, name);
    files.push({ path: `${relativeDir}/${name}`, size: (await stat(path)).size, sha256: await sha256OfFile(path) });
  }
  return files;
}
