/** The signed channel manifest: written last, in one rename, so it is the publish's commit point. */
import { mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import { ManifestSchema, SignedManifestSchema, manifestPath, serializeSignedManifest, signManifest, type Manifest } from "../../shared/wire/manifest.ts";
import type { Ed25519KeyPair } from "../../shared/sign/ed25519.ts";

export async function writeChannelManifest(repo: string, manifest: Manifest, keys: Ed25519KeyPair[]): Promise<string> {
  const relative = manifestPath(manifest.channel, manifest.ref);
  const path = join(repo, relative);
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, serializeSignedManifest(signManifest(manifest, keys)));
  return relative;
}

/** The manifest currently published for a channel and ref (unverified: this is the server's own file), or null. */
export async function readChannelManifest(repo: string, channel: string, ref: string): Promise<Manifest | null> {
  const text = await readFile(join(repo, manifestPath(channel, ref)), "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw error;
  });
  if (text === null) return null;
  return ManifestSchema.parse(SignedManifestSchema.parse(JSON.parse(text)).manifest);
}

/** Where publish keeps the highest sequence it ever published on a channel for a ref (not served to devices as a manifest: no `.json`). */
function highestSequencePath(repo: string, channel: string, ref: string): string {
  return join(repo, manifestPath(channel, ref).replace(/\.json$/, ".highest-sequence"));
}

/**
 * The highest sequence ever published on `channel` for `ref`: the larger of the recorded mark and
 * the current manifest's, so a downgrade followed by a publish of the version in between is still
 * a downgrade (the devices that took the highest keep refusing anything lower).
 */
export async function readHighestSequence(repo: string, channel: string, ref: string, current: Manifest | null): Promise<number | null> {
  const text = await readFile(highestSequencePath(repo, channel, ref), "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw error;
  });
  const recorded = text === null ? null : Number(text.trim());
  if (recorded !== null && !Number.isSafeInteger(recorded)) throw new Error(`${highestSequencePath(repo, channel, ref)} does not hold a sequence number: '${text!.trim().slice(0, 40)}'`);
  const candidates = [recorded, current?.sequence ?? null].filter((n): n is number => n !== null);
  return candidates.length > 0 ? Math.max(...candidates) : null;
}

/** Raises the mark (never lowers it); written before the manifest, so a power cut between the two leaves the mark at least as high. */
export async function recordHighestSequence(repo: string, channel: string, ref: string, sequence: number, highest: number | null): Promise<void> {
  if (highest !== null && sequence <= highest) return;
  const path = highestSequencePath(repo, channel, ref);
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, `${sequence}\n`);
}
