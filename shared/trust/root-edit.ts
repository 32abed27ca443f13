/**
 * Making root versions (the server's `keys` commands and tests): a first root from one key set
 * per role, the next version with a role's keys replaced or a key revoked, and signatures added
 * one holder at a time. Every result passes the same rules the device checks.
 */
import { signCanonical } from "../sign/canonical-signature.ts";
import { keyId, type Ed25519KeyPair } from "../sign/ed25519.ts";
import { checkRootRules, type Root, type SignedRoot } from "./root.ts";
import { ROLE_NAMES, type RoleName } from "./signers.ts";

export type RoleKeys = Record<RoleName, Uint8Array[]>;
export type RoleThresholds = Partial<Record<RoleName, number>>;

const DAY_MS = 24 * 3600 * 1000;

export function expiryAfterDays(now: Date, days: number): string {
  return new Date(now.getTime() + days * DAY_MS).toISOString();
}

export function firstRoot(keys: RoleKeys, thresholds: RoleThresholds, expires: string): Root {
  const root: Root = { schema: 1, version: 1, expires, keys: {}, roles: {} as Root["roles"], revoked: {} };
  for (const role of ROLE_NAMES) {
    for (const key of keys[role]) root.keys[keyId(key)] = { type: "ed25519", public: Buffer.from(key).toString("base64") };
    root.roles[role] = { keyids: keys[role].map(keyId), threshold: thresholds[role] ?? 1 };
  }
  checkRootRules(root, "the new root");
  return root;
}

/**
 * The next version: `role` held by `keys` now. The keys it held before and no longer does are
 * retired as revoked, so a signature by one is refused by name and the key never comes back.
 */
export function rotateRole(previous: Root, role: RoleName, keys: Uint8Array[], threshold: number, expires: string): Root {
  const next = successor(previous, expires);
  const kept = new Set(keys.map(keyId));
  for (const id of next.roles[role].keyids) {
    if (!kept.has(id)) next.revoked[id] = next.keys[id]!.public;
    delete next.keys[id];
  }
  for (const key of keys) next.keys[keyId(key)] = { type: "ed25519", public: Buffer.from(key).toString("base64") };
  next.roles[role] = { keyids: keys.map(keyId), threshold };
  checkRootRules(next, `root version ${next.version}`);
  return next;
}

/** The next version without key `id`, listed as revoked from then on; its role must keep enough keys for its threshold. */
export function revokeKey(previous: Root, id: string, expires: string): Root {
  const key = previous.keys[id];
  if (!key) throw new RangeError(`key ${id.slice(0, 16)} is not in root version ${previous.version}`);
  const next = successor(previous, expires);
  const role = ROLE_NAMES.find((r) => next.roles[r].keyids.includes(id))!;
  delete next.keys[id];
  next.revoked[id] = key.public;
  const keyids = next.roles[role].keyids.filter((k) => k !== id);
  if (keyids.length === 0) throw new RangeError(`key ${id.slice(0, 16)} is the last ${role} key: rotate the ${role} role to a new key instead (keys rotate --role ${role}), which revokes the old one`);
  const { threshold } = next.roles[role];
  if (keyids.length < threshold) {
    throw new RangeError(`revoking ${id.slice(0, 16)} would leave the ${role} role ${keyids.length} key(s) for its threshold of ${threshold}: rotate the role instead (keys rotate --role ${role} --keys ${threshold} --threshold ${threshold})`);
  }
  next.roles[role] = { keyids, threshold };
  checkRootRules(next, `root version ${next.version}`);
  return next;
}

function successor(previous: Root, expires: string): Root {
  const copy = structuredClone(previous);
  return { ...copy, version: previous.version + 1, expires };
}

/** `signed` with a signature by each of `keys` added (a key already signed is not added twice). */
export function addRootSignatures(signed: SignedRoot, keys: Ed25519KeyPair[]): SignedRoot {
  const present = new Set(signed.signatures.map((s) => s.keyid));
  const fresh = keys.filter((k) => !present.has(keyId(k.publicKey)));
  return { root: signed.root, signatures: [...signed.signatures, ...signCanonical(signed.root, fresh)] };
}

export function signRoot(root: Root, keys: Ed25519KeyPair[]): SignedRoot {
  return addRootSignatures({ root, signatures: [] }, keys);
}
