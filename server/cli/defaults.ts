import { fileURLToPath } from "node:url";
import { parseDuration } from "../../shared/duration.ts";
import { UsageError } from "../../shared/errors.ts";

/** The recipes shipped in this checkout. */
export const DEFAULT_RECIPES_DIR = fileURLToPath(new URL("../../yocto-like-recipes/", import.meta.url));

export function defaultRepo(env: NodeJS.ProcessEnv): string {
  return env.APT_OSTREE_REPO ?? "/var/lib/apt-ostree-server/repo";
}

/** A duration flag's value in seconds; a malformed one is a usage error naming the flag. */
export function parseDurationSeconds(text: string, option: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new UsageError(`--${option}: ${(error as Error).message}`);
  }
}
