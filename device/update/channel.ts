/** The channel manifest a ref's channel publishes (`<server>/repo/channels/<channel>/<ref>.json`), fetched with undici. */
import { AptOstreeError } from "../../shared/errors.ts";
import { manifestPath } from "../../shared/wire/manifest.ts";
import { loadHttpClient } from "./load-http-client.ts";

export class ChannelFetchError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_CHANNEL_FETCH", message, { cause });
  }
}

export function repoUrl(server: string): string {
  return `${server.replace(/\/$/, "")}/repo`;
}

/** The signed manifest as JSON (not yet verified: the caller verifies it against the pinned keys). */
export async function fetchChannelManifest(server: string, channel: string, ref: string): Promise<unknown> {
  const url = `${repoUrl(server)}/${manifestPath(channel, ref)}`;
  const { request } = await loadHttpClient();
  let response;
  try {
    response = await request(url, { method: "GET", headersTimeout: 30_000, bodyTimeout: 60_000 });
  } catch (error) {
    throw new ChannelFetchError(`cannot reach ${url}: ${(error as Error).message}`, error);
  }
  if (response.statusCode === 404) {
    await response.body.dump();
    throw new ChannelFetchError(`channel ${channel} publishes nothing for ${ref} (${url}: 404)`);
  }
  if (response.statusCode !== 200) {
    await response.body.dump();
    throw new ChannelFetchError(`GET ${url}: HTTP ${response.statusCode}`);
  }
  try {
    return await response.body.json();
  } catch (error) {
    throw new ChannelFetchError(`${url} is not JSON`, error);
  }
}
