/**
 * The one way the agent gets its HTTP client: undici (through http-client.ts) is loaded on first
 * use, so an idle agent never carries it (~11 MB resident). An accepted update starts the load
 * at once, so the first download does not wait for it.
 */
export function loadHttpClient(): Promise<typeof import("./http-client.ts")> {
  return import("./http-client.ts");
}
