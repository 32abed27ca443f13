/** `--key PUB` of `device preauthorize` and `device rekey`: a base64 ed25519 public key, or a file holding one. */
import { readFile } from "node:fs/promises";
import { UsageError } from "../../shared/errors.ts";
import { parsePublicKeys } from "../../shared/sign/keys.ts";
import { ED25519_PUBLIC_KEY_BASE64 } from "../../shared/wire/base64.ts";

/** The key as base64 (what device tokens carry); a file must hold exactly one key. */
export async function readDevicePublicKey(value: string): Promise<string> {
  if (ED25519_PUBLIC_KEY_BASE64.test(value)) return value;
  const text = await readFile(value, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`--key: '${value}' is neither a base64 ed25519 public key (44 characters ending in '=') nor a readable file (${error.code ?? error.message})`);
  });
  const keys = parsePublicKeys(text, value);
  if (keys.length !== 1) throw new UsageError(`--key: ${value} holds ${keys.length} public keys; a device has exactly one`);
  return Buffer.from(keys[0]!).toString("base64");
}
