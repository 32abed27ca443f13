import { UsageError } from "./errors.ts";

/** Pure: durations like 90s, 10m, 6h, 30d (a bare number is seconds) into seconds. Callers name the setting. */
export function parseDuration(text: string): number {
  const match = /^(\d+)(s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new RangeError(`'${text}' is not a duration like 90s, 10m, 6h or 30d`);
  return Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(match[2] ?? "s") as "s"];
}

/** A duration flag's value in seconds; a malformed one is a usage error naming the flag. */
export function parseDurationSeconds(text: string, option: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new UsageError(`--${option}: ${(error as Error).message}`);
  }
}
