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
