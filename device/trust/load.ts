/** The agent's trust from its settings: the root chain when the image ships a root, else the legacy pinned keys. */
import { join } from "node:path";
import { AptOstreeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { readPinnedKeys } from "../../shared/sign/keys.ts";
import { ROOT_JSON_LIMITS } from "../../shared/trust/root.ts";
import type { AgentSettings } from "../config/settings.ts";
import { fetchBounded } from "../update/bounded-fetch.ts";
import { repoUrl } from "../update/channel.ts";
import { pinnedTrust, type DeviceTrust } from "./device-trust.ts";
import { RootStore } from "./root-store.ts";

/** Root versions are small: a fetch of one gets 30 s. */
const ROOT_FETCH_TIMEOUT_MS = 30_000;

export function trustDir(settings: AgentSettings): string {
  return join(settings.stateDir, "trust");
}

export async function loadDeviceTrust(settings: AgentSettings, log: Logger, now: () => Date = () => new Date()): Promise<DeviceTrust> {
  try {
    return await RootStore.open({
      shippedRoot: settings.rootFile,
      trustDir: trustDir(settings),
      fetchRoot: (version) => fetchBounded(`${repoUrl(settings)}/roots/${version}.root.json`, "a root version", { maxBytes: ROOT_JSON_LIMITS.maxBytes, timeoutMs: ROOT_FETCH_TIMEOUT_MS }),
      ostreeKeysFile: settings.ostreeKeysFile === "" ? null : settings.ostreeKeysFile,
      now,
      log,
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const keys = await readPinnedKeys(settings.keysDir).catch((error: Error) => {
    throw new AptOstreeError("E_NO_KEYS", `no root of trust at ${settings.rootFile} and cannot read the pinned keys in ${settings.keysDir}: ${error.message}`, { cause: error });
  });
  if (keys.length === 0) throw new AptOstreeError("E_NO_KEYS", `no root of trust at ${settings.rootFile} and no key pinned in ${settings.keysDir}: the agent would trust nothing`);
  log.warn({ event: "trust.legacy-pinned-keys", keysDir: settings.keysDir }, `no root of trust at ${settings.rootFile}: any key in ${settings.keysDir} signs every role, and no key can be rotated or revoked (docs/trust.md)`);
  return pinnedTrust(keys);
}
