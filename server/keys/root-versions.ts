/**
 * The operations behind `apt-ostree-server keys`: a first root, and each next version (a role
 * rotated, a key revoked) signed by the root keys this holder has; a version that still lacks
 * root signatures waits in TRUST/pending/ until `sign-root` completes it.
 */
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { generateKeyPair, keyId, type Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { RootThresholdError, verifyNextRoot, verifyRootSelf, serializeSignedRoot, type Root, type SignedRoot } from "../../shared/trust/root.ts";
import { addRootSignatures, firstRoot, signRoot, type RoleKeys, type RoleThresholds } from "../../shared/trust/root-edit.ts";
import { ROLE_NAMES, type RoleName } from "../../shared/trust/signers.ts";
import { addRootVersion, publishRoots, readTrustDir, retireKey, rootVersionFile, secretsFor, TrustDirError, writePendingRoot, writeRoleKey, type TrustDir } from "./trust-dir.ts";

export interface NewVersionResult {
  version: number;
  /** True when the thresholds are met and the version is in roots/ (and the repo when given). */
  complete: boolean;
  /** The version's file: roots/<N>.root.json, or pending/<N>.root.json while incomplete. */
  file: string;
  /** Root signatures still needed, old and new, when incomplete. */
  missing: { old: number; new: number } | null;
  /** Versions copied to the repo's roots/. */
  published: number[];
}

export interface InitRootResult {
  dir: string;
  root: string;
  keys: Array<{ role: RoleName; keyid: string; secret: string }>;
}

export async function initRoot(dir: string, options: { rootKeys: number; thresholds: RoleThresholds; expires: string }): Promise<InitRootResult> {
  if (await readTrustDir(dir).then(() => true, () => false)) throw new TrustDirError(`${dir} already holds a root; rotate keys with 'keys rotate' instead of starting a new root (devices would refuse it)`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const pairs: Record<RoleName, Ed25519KeyPair[]> = { root: [], image: [], release: [], command: [] };
  for (const role of ROLE_NAMES) {
    const count = role === "root" ? options.rootKeys : (options.thresholds[role] ?? 1);
    pairs[role] = Array.from({ length: count }, generateKeyPair);
  }
  const publicKeys = Object.fromEntries(ROLE_NAMES.map((role) => [role, pairs[role].map((k) => k.publicKey)])) as RoleKeys;
  const signed = signRoot(firstRoot(publicKeys, options.thresholds, options.expires), pairs.root);
  verifyRootSelf(serializeSignedRoot(signed), "the new root");
  const keys: InitRootResult["keys"] = [];
  for (const role of ROLE_NAMES) {
    for (const pair of pairs[role]) keys.push({ role, keyid: keyId(pair.publicKey), secret: (await writeRoleKey(dir, role, pair)).secret });
  }
  await addRootVersion(dir, signed);
  return { dir, root: `${dir}/root.json`, keys };
}

/**
 * Signs `next` (the version after the trust directory's newest) with every root key this holder
 * has, old and new, and either completes it or leaves it pending.
 */
export async function addNextVersion(trust: TrustDir, next: Root, newKeys: Ed25519KeyPair[], repo: string | null): Promise<NewVersionResult> {
  const previous = trust.newest.root;
  await refusePending(trust, next.version);
  const holders = [...secretsFor(trust, previous, "root"), ...newKeys, ...[...trust.secrets.values()].filter((k) => next.roles.root.keyids.includes(keyId(k.publicKey)))];
  const signed = addRootSignatures({ root: next, signatures: [] }, dedupe(holders));
  return completeOrPend(trust, signed, repo);
}

export async function completeOrPend(trust: TrustDir, signed: SignedRoot, repo: string | null): Promise<NewVersionResult> {
  const previous = trust.newest.root;
  if (signed.root.version !== previous.version + 1) throw new TrustDirError(`root version ${signed.root.version} does not follow the trust directory's newest, version ${previous.version}`);
  try {
    verifyNextRoot(previous, serializeSignedRoot(signed), `root version ${signed.root.version}`);
  } catch (error) {
    if (!(error instanceof RootThresholdError)) throw error;
    const file = await writePendingRoot(trust.dir, signed);
    return { version: signed.root.version, complete: false, file, missing: missingSignatures(previous, signed), published: [] };
  }
  await addRootVersion(trust.dir, signed);
  // Keys revoked by this version leave every role's reach only now that devices can learn of it.
  for (const id of Object.keys(signed.root.revoked)) if (!(id in previous.revoked)) await retireKey(trust.dir, id);
  const published = repo ? await publishRoots([...trust.roots, signed], repo) : [];
  return { version: signed.root.version, complete: true, file: `${trust.dir}/roots/${signed.root.version}.root.json`, missing: null, published };
}

/** Two different "version N" files must never circulate: finish or drop the pending one first. */
export async function refusePending(trust: TrustDir, version: number): Promise<void> {
  const file = join(trust.dir, "pending", rootVersionFile(version));
  if (await stat(file).then(() => true, () => false)) {
    throw new TrustDirError(`root version ${version} already waits for signatures in ${file}: complete it with 'keys sign-root' or remove it before making another`);
  }
}

function missingSignatures(previous: Root, signed: SignedRoot): { old: number; new: number } {
  const signers = new Set(signed.signatures.map((s) => s.keyid));
  const count = (root: Root) => Math.max(0, root.roles.root.threshold - root.roles.root.keyids.filter((id) => signers.has(id)).length);
  return { old: count(previous), new: count(signed.root) };
}

function dedupe(keys: Ed25519KeyPair[]): Ed25519KeyPair[] {
  const seen = new Set<string>();
  return keys.filter((k) => {
    const id = keyId(k.publicKey);
    return !seen.has(id) && seen.add(id);
  });
}
