import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { AptOstreeError } from "../errors.ts";
import { publicKeyFromSeed, type Ed25519KeyPair } from "./ed25519.ts";
import { decodeBase64Strict } from "../wire/base64.ts";

/** A key file that cannot be used, named with the reason. */
export class KeyFormatError extends AptOstreeError {
  constructor(message: string) {
    super("E_KEY_FORMAT", message);
  }
}

/** OSTree's `trusted.ed25519` format: base64 of the raw 32-byte public key, one per line. */
export function formatPublicKey(publicKey: Uint8Array): string {
  return `${Buffer.from(publicKey).toString("base64")}\n`;
}

/** OSTree's (libsodium's) secret key layout: base64 of seed followed by the public key. */
export function formatSecretKey(pair: Ed25519KeyPair): string {
  return `${Buffer.concat([pair.seed, pair.publicKey]).toString("base64")}\n`;
}

export function parsePublicKeys(text: string, source: string): Uint8Array[] {
  const keys: Uint8Array[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const bytes = decodeBase64Strict(line);
    if (bytes?.length !== 32) {
      throw new KeyFormatError(`${source}:${index + 1}: not an ed25519 public key (expected base64 of 32 bytes)`);
    }
    keys.push(bytes);
  });
  return keys;
}

export function parseSecretKey(text: string, source: string): Ed25519KeyPair {
  const bytes = decodeBase64Strict(text.trim());
  if (bytes?.length !== 64) {
    throw new KeyFormatError(`${source}: not an ed25519 secret key (expected base64 of 64 bytes: seed then public key)`);
  }
  const seed = bytes.subarray(0, 32);
  const publicKey = bytes.subarray(32);
  if (!Buffer.from(publicKeyFromSeed(seed)).equals(publicKey)) {
    throw new KeyFormatError(`${source}: the public half does not belong to the seed; the file is corrupt`);
  }
  return { seed: new Uint8Array(seed), publicKey: new Uint8Array(publicKey) };
}

export async function readSecretKeyFile(path: string): Promise<Ed25519KeyPair> {
  const text = await readFile(path, "utf8").catch((cause: unknown) => {
    throw new KeyFormatError(`cannot read secret key ${path}: ${(cause as Error).message}`);
  });
  return parseSecretKey(text, path);
}

export async function readPublicKeyFile(path: string): Promise<Uint8Array[]> {
  const text = await readFile(path, "utf8").catch((cause: unknown) => {
    throw new KeyFormatError(`cannot read public key ${path}: ${(cause as Error).message}`);
  });
  return parsePublicKeys(text, path);
}

/** Every public key in the files of a pinned-keys directory (e.g. /usr/lib/apt-ostree/keys.d/), sorted by file name. */
export async function readPinnedKeys(dir: string): Promise<Uint8Array[]> {
  const names = (await readdir(dir)).filter((name) => !name.startsWith(".")).sort();
  const keys: Uint8Array[] = [];
  for (const name of names) keys.push(...(await readPublicKeyFile(join(dir, name))));
  return keys;
}

