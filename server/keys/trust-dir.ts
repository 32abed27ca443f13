/**
 * The operator's trust directory (docs/trust.md): every root version, the versions waiting for
 * signatures, and the secret keys this holder has. Kept offline; `publish` and `serve` get only
 * the keys of their roles.
 *
 *   TRUST/root.json                the newest complete root (what an image ships)
 *   TRUST/roots/<N>.root.json      every complete version, published to REPO/roots/
 *   TRUST/pending/<N>.root.json    a version waiting for root signatures (keys sign-root)
 *   TRUST/keys/<role>-<keyid16>.secret (0600) and .pub
 */
import { mkdir, readdir, readFile, rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { AptOstreeError } from "../../shared/errors.ts";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import { keyId, type Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { formatPublicKey, formatSecretKey, readSecretKeyFile } from "../../shared/sign/keys.ts";
import { parseSignedRoot, serializeSignedRoot, verifyNextRoot, verifyRootSelf, type Root, type SignedRoot } from "../../shared/trust/root.ts";
import { ROLE_NAMES, type RoleName } from "../../shared/trust/signers.ts";

export class TrustDirError extends AptOstreeError {
  constructor(message: string) {
    super("E_TRUST_DIR", message);
  }
}

export const rootVersionFile = (version: number) => `${version}.root.json`;
const VERSION_FILE = /^([1-9][0-9]{0,8})\.root\.json$/;

/** The versions among a roots/ folder's file names, oldest first. */
function rootVersions(names: string[]): number[] {
  return names.flatMap((name) => VERSION_FILE.exec(name)?.[1] ?? []).map(Number).sort((a, b) => a - b);
}

export interface TrustDir {
  dir: string;
  /** Every complete version, oldest first (each verified against the one before). */
  roots: SignedRoot[];
  newest: SignedRoot;
  /** The secret keys this holder has, by key id. */
  secrets: Map<string, Ed25519KeyPair>;
}

export async function readTrustDir(dir: string): Promise<TrustDir> {
  const names = await readdir(join(dir, "roots")).catch((error: NodeJS.ErrnoException) => {
    throw new TrustDirError(error.code === "ENOENT" ? `${dir} is not a trust directory (no roots/): create one with 'apt-ostree-server keys init-root --out ${dir}'` : `cannot read ${dir}/roots: ${error.message}`);
  });
  const versions = rootVersions(names);
  if (versions[0] !== 1) throw new TrustDirError(`${dir}/roots has no ${rootVersionFile(1)}`);
  const roots: SignedRoot[] = [];
  for (const version of versions) {
    const file = join(dir, "roots", rootVersionFile(version));
    const bytes = await readFile(file);
    const previous = roots.at(-1);
    if (previous && version !== previous.root.version + 1) throw new TrustDirError(`${dir}/roots: version ${previous.root.version + 1} is missing before ${version}`);
    roots.push(previous ? verifyNextRoot(previous.root, bytes, file) : verifyRootSelf(bytes, file));
  }
  return { dir, roots, newest: roots.at(-1)!, secrets: await readSecrets(join(dir, "keys")) };
}

async function readSecrets(keysDir: string): Promise<Map<string, Ed25519KeyPair>> {
  const secrets = new Map<string, Ed25519KeyPair>();
  const names = await readdir(keysDir).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.endsWith(".secret"))) {
    const pair = await readSecretKeyFile(join(keysDir, name));
    secrets.set(keyId(pair.publicKey), pair);
  }
  return secrets;
}

/** The secret keys this holder has for `role` under `root`. */
export function secretsFor(trust: TrustDir, root: Root, role: RoleName): Ed25519KeyPair[] {
  return root.roles[role].keyids.flatMap((id) => trust.secrets.get(id) ?? []);
}

/** Writes a new key pair for `role`; returns it. */
export async function writeRoleKey(dir: string, role: RoleName, pair: Ed25519KeyPair): Promise<{ secret: string; public: string }> {
  const keys = join(dir, "keys");
  await mkdir(keys, { recursive: true, mode: 0o700 });
  const base = join(keys, `${role}-${keyId(pair.publicKey).slice(0, 16)}`);
  await writeFileAtomic(`${base}.secret`, formatSecretKey(pair), 0o600);
  await writeFileAtomic(`${base}.pub`, formatPublicKey(pair.publicKey));
  return { secret: `${base}.secret`, public: `${base}.pub` };
}

/** Moves a revoked key's files to keys/revoked/, out of every role's reach. */
export async function retireKey(dir: string, id: string): Promise<void> {
  const retired = join(dir, "keys", "revoked");
  await mkdir(retired, { recursive: true, mode: 0o700 });
  for (const role of ROLE_NAMES) {
    for (const ext of [".secret", ".pub"]) {
      const name = `${role}-${id.slice(0, 16)}${ext}`;
      await rename(join(dir, "keys", name), join(retired, name)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "ENOENT") throw error;
      });
    }
  }
}

/** Adds a complete version: roots/<N>.root.json, then root.json; drops its pending copy. */
export async function addRootVersion(dir: string, signed: SignedRoot): Promise<void> {
  const text = serializeSignedRoot(signed);
  await mkdir(join(dir, "roots"), { recursive: true });
  await writeFileAtomic(join(dir, "roots", rootVersionFile(signed.root.version)), text);
  await writeFileAtomic(join(dir, "root.json"), text);
  await rename(join(dir, "pending", rootVersionFile(signed.root.version)), join(dir, "pending", `.done-${rootVersionFile(signed.root.version)}`)).catch(() => undefined);
}

export async function writePendingRoot(dir: string, signed: SignedRoot): Promise<string> {
  await mkdir(join(dir, "pending"), { recursive: true });
  const file = join(dir, "pending", rootVersionFile(signed.root.version));
  await writeFileAtomic(file, serializeSignedRoot(signed));
  return file;
}

export async function readRootFile(file: string): Promise<SignedRoot> {
  const bytes = await readFile(file).catch((error: Error) => {
    throw new TrustDirError(`cannot read ${file}: ${error.message}`);
  });
  return parseSignedRoot(bytes, file);
}

/**
 * Copies every version to REPO/roots/ (missing ones only, oldest first, each atomically), where
 * devices walk them; returns the versions copied. Any static host serving the repo serves them.
 */
export async function publishRoots(roots: SignedRoot[], repo: string): Promise<number[]> {
  await stat(join(repo, "config")).catch(() => {
    throw new TrustDirError(`${repo} is not an OSTree repo (no config): pass the repo that serve serves`);
  });
  const target = join(repo, "roots");
  await mkdir(target, { recursive: true });
  const copied: number[] = [];
  for (const signed of roots) {
    const file = join(target, rootVersionFile(signed.root.version));
    const text = serializeSignedRoot(signed);
    if ((await readFile(file, "utf8").catch(() => null)) === text) continue;
    await writeFileAtomic(file, text);
    copied.push(signed.root.version);
  }
  return copied;
}

/** The newest root published in a repo (serve checks its command key against it), or null when the repo has none. */
export async function newestPublishedRoot(repo: string): Promise<SignedRoot | null> {
  const newest = rootVersions(await readdir(join(repo, "roots")).catch(() => [] as string[])).at(-1);
  if (newest === undefined) return null;
  return parseSignedRoot(await readFile(join(repo, "roots", rootVersionFile(newest))), join(repo, "roots", rootVersionFile(newest)));
}

/** publish's keys from a trust directory: its image and release keys under the newest root, and every root version. */
export async function trustPublishKeys(dir: string): Promise<{ imageKeys: Ed25519KeyPair[]; releaseKeys: Ed25519KeyPair[]; roots: SignedRoot[] }> {
  const trust = await readTrustDir(dir);
  const imageKeys = secretsFor(trust, trust.newest.root, "image");
  const releaseKeys = secretsFor(trust, trust.newest.root, "release");
  if (imageKeys.length === 0 || releaseKeys.length === 0) throw new TrustDirError(`${dir} holds no ${imageKeys.length === 0 ? "image" : "release"} key of root version ${trust.newest.root.version}`);
  return { imageKeys, releaseKeys, roots: trust.roots };
}

/** The secret key file of the command role under the newest root (what serve --key takes). */
export async function commandKeyFile(dir: string): Promise<string> {
  const trust = await readTrustDir(dir);
  for (const id of trust.newest.root.roles.command.keyids) {
    const file = join(dir, "keys", `command-${id.slice(0, 16)}.secret`);
    if (await stat(file).then(() => true, () => false)) return file;
  }
  throw new TrustDirError(`${dir} holds no command key of root version ${trust.newest.root.version}`);
}
