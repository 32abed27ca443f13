import { fileURLToPath } from "node:url";

/** The recipes shipped in this checkout. */
export const DEFAULT_RECIPES_DIR = fileURLToPath(new URL("../../yocto-like-recipes/", import.meta.url));

export function defaultRepo(env: NodeJS.ProcessEnv): string {
  return env.APT_OSTREE_REPO ?? "/var/lib/apt-ostree-server/repo";
}
