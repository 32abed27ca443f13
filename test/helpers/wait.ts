export interface UntilOptions {
  /** Pause between probes (default 50 ms). */
  intervalMs?: number;
  /** Extra context for the timeout error, e.g. the device's state or a serial console's tail. */
  detail?: () => Promise<string> | string;
  /** An error thrown by the probe ends the wait with that error (default: it counts as not yet). */
  rethrow?: boolean;
}

/** Polls `probe` until it returns something truthy; fails naming what it waited for. */
export async function until<T>(probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, what: string, ms = 15_000, options: UntilOptions = {}): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const value = await Promise.resolve()
      .then(probe)
      .catch((error: unknown) => {
        if (options.rethrow) throw error;
        return null;
      });
    if (value) return value;
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50));
  }
  const detail = options.detail ? await Promise.resolve().then(options.detail).catch((error: Error) => `(no detail: ${error.message})`) : "";
  throw new Error(`timed out waiting for ${what}${detail ? `; ${detail}` : ""}`);
}
