import { fileURLToPath } from "node:url";
import { UsageError } from "../../shared/errors.ts";

/** The recipes shipped in this checkout. */
export const DEFAULT_RECIPES_DIR = fileURLToPath(new URL("../../yocto-like-recipes/", import.meta.url));

export function defaultRepo(env: NodeJS.ProcessEnv): string {
  return env.APT_OSTREE_REPO ?? "/var/lib/apt-ostree-server/repo";
}

/** Parses durations like 90s, 10m, 6h, 30d into seconds. */
export function parseDurationSeconds(text: string, option: string): number {
  const match = /^(\d+)(s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new UsageError(`--${option}: '${text}' is not a duration like 90s, 10m, 6h or 30d`);
  return Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(match[2] ?? "s") as "s"];
}
