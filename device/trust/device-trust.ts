/**
 * What the agent trusts, by role (docs/trust.md): the keys a command, a channel manifest and a
 * commit must each be signed by, and a way to learn newer roots from the server.
 */
import type { RoleName, Signers } from "../../shared/trust/signers.ts";
import { anyOf } from "../../shared/trust/signers.ts";

export interface DeviceTrust {
  /** The keys of `role` under the newest trusted root; throws RootExpiredError when that root expired. */
  signers(role: RoleName): Signers;
  /** Walks newer root versions from the server; true when the trusted root changed. */
  refresh(): Promise<boolean>;
  /** The trusted root's version, null for legacy pinned keys. */
  readonly rootVersion: number | null;
}

/**
 * Legacy trust, for images built before root metadata: any pinned key (keys.d) signs any role,
 * nothing rotates. Kept so such devices keep updating until an update ships them a root.
 */
export function pinnedTrust(keys: Uint8Array[]): DeviceTrust {
  const signers = anyOf(keys);
  return { signers: () => signers, refresh: async () => false, rootVersion: null };
}
