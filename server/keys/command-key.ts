/**
 * serve signs commands with one key; when the repo publishes roots, that key must hold the
 * command role of the newest one, or every device would refuse every command it signs.
 */
import { AptOstreeError } from "../../shared/errors.ts";
import { keyId, type Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { newestPublishedRoot } from "./trust-dir.ts";

export class CommandKeyRoleError extends AptOstreeError {
  constructor(message: string) {
    super("E_KEY_WRONG_ROLE", message);
  }
}

/** Throws when the repo's newest root does not give `key` the command role; legacy repos (no roots/) accept any key. */
export async function checkCommandKey(repo: string, key: Ed25519KeyPair): Promise<void> {
  const newest = await newestPublishedRoot(repo);
  if (newest === null) return;
  const id = keyId(key.publicKey);
  const { root } = newest;
  if (root.roles.command.keyids.includes(id)) return;
  const holds = (["root", "image", "release"] as const).find((role) => root.roles[role].keyids.includes(id));
  const why = id in root.revoked ? "was revoked" : holds ? `holds the ${holds} role` : "is not in it";
  throw new CommandKeyRoleError(
    `the signing key ${id.slice(0, 16)} ${why} in root version ${root.version} (${repo}/roots): devices would refuse its commands; start serve with a command key (TRUST/keys/command-*.secret)`,
  );
}
