/**
 * The device's ed25519 identity, generated on first start and kept in `<stateDir>/identity.key`
 * (0600, OSTree's secret key format), and its id: the configured one, or one generated once and
 * kept in `<stateDir>/device-id`.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import { generateKeyPair, type Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { formatSecretKey, parseSecretKey } from "../../shared/sign/keys.ts";

export interface DeviceIdentity {
  deviceId: string;
  key: Ed25519KeyPair;
}

async function readOrCreate(path: string, create: () => string): Promise<string> {
  const existing = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw error;
  });
  if (existing !== null) return existing;
  const text = create();
  await writeFileAtomic(path, text, 0o600);
  return text;
}

export async function loadIdentity(stateDir: string, configuredId: string | null): Promise<DeviceIdentity> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const keyPath = join(stateDir, "identity.key");
  const key = parseSecretKey(await readOrCreate(keyPath, () => formatSecretKey(generateKeyPair())), keyPath);
  const deviceId = configuredId ?? (await readOrCreate(join(stateDir, "device-id"), () => `device-${randomBytes(6).toString("hex")}\n`)).trim();
  return { deviceId, key };
}
