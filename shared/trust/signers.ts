/**
 * The keys a document must be signed by: one role's keys and its threshold, plus what the
 * verifier needs to say *why* a signature does not count (a revoked key, a key of another
 * role). Built from a verified root (root.ts `signersFor`) or, for a single pinned key such as a
 * device's identity, with `anyOf`.
 */
import { keyId } from "../sign/ed25519.ts";

export type RoleName = "root" | "image" | "release" | "command";
export const ROLE_NAMES: readonly RoleName[] = ["root", "image", "release", "command"];

export interface Signers {
  /** What the keys sign, for messages: a role name, or "pinned" outside the root's roles. */
  role: RoleName | "pinned";
  /** The role's keys by key id. */
  keys: ReadonlyMap<string, Uint8Array>;
  /** Distinct keys of the role whose signature must verify. */
  threshold: number;
  /** Keys revoked by the root, by key id: their signatures are refused by name. */
  revoked: ReadonlyMap<string, Uint8Array>;
  /** Keys the root gives to other roles, by key id. */
  otherRoles: ReadonlyMap<string, { role: RoleName; publicKey: Uint8Array }>;
  /** The root version the roles come from (messages only). */
  rootVersion: number | null;
}

export function keyMap(keys: Uint8Array[]): Map<string, Uint8Array> {
  return new Map(keys.map((key) => [keyId(key), key]));
}

/** Any one of `keys` suffices: a device's own identity key, or legacy pinned keys without a root. */
export function anyOf(keys: Uint8Array[]): Signers {
  return { role: "pinned", keys: keyMap(keys), threshold: 1, revoked: new Map(), otherRoles: new Map(), rootVersion: null };
}
