/** The channel manifest a ref's channel publishes (`<repo>/channels/<channel>/<ref>.json`), fetched with undici. */
import { manifestPath } from "../../shared/wire/manifest.ts";
import { ChannelFetchError, fetchBounded, type FetchLimits } from "./bounded-fetch.ts";

export { ChannelFetchError };
export type ChannelFetchLimits = FetchLimits;

export const CHANNEL_FETCH_LIMITS: ChannelFetchLimits = { maxBytes: 1024 * 1024, timeoutMs: 30_000 };

/** Where the device finds the repo: its configured `repo` (a static host), else `<server>/repo`. */
export function repoUrl(settings: { server: string; repo: string | null }): string {
  return settings.repo?.replace(/\/$/, "") ?? `${settings.server.replace(/\/$/, "")}/repo`;
}

/**
 * The signed manifest as JSON (not yet verified: the caller verifies it against the release
 * keys), bounded in size and time (bounded-fetch.ts).
 */
export async function fetchChannelManifest(repo: string, channel: string, ref: string, limits: Partial<ChannelFetchLimits> = {}): Promise<unknown> {
  const url = `${repo}/${manifestPath(channel, ref)}`;
  const body = await fetchBounded(url, "a channel manifest", { ...CHANNEL_FETCH_LIMITS, ...limits });
  if (body === null) throw new ChannelFetchError("E_CHANNEL_FETCH", `channel ${channel} publishes nothing for ${ref} (${url}: 404)`);
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new ChannelFetchError("E_CHANNEL_FETCH", `${url} is not JSON`, error);
  }
}
