import { resolve } from "node:path";
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { UsageError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import { parseDurationSeconds } from "../../shared/duration.ts";
import { defaultCacheDir } from "../compose/cache.ts";
import { compose } from "../compose/compose.ts";
import { createComposeProgress } from "../compose/progress.ts";
import { DEFAULT_RECIPES_DIR, defaultRepo } from "./defaults.ts";

const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$/;

export const composeCommand = defineCommand({
  name: "compose",
  description: "Compose an OS image from a recipe with Debian's packages (mmdebstrap) into an OSTree commit.",
  options: {
    image: { type: "string", valueName: "NAME", required: true, description: "Image recipe: RECIPES/images/NAME.yaml" },
    machine: { type: "string", valueName: "NAME", required: true, description: "Machine: RECIPES/conf/machine/NAME.yaml" },
    repo: { type: "string", valueName: "DIR", description: "Archive repo to commit to, created if missing (default: $APT_OSTREE_REPO or /var/lib/apt-ostree-server/repo)" },
    version: { type: "string", valueName: "V", description: "Version of the commit (default: the previous version on the ref plus one)" },
    recipes: { type: "string", valueName: "DIR", description: "Recipes directory (default: the checkout's yocto-like-recipes)" },
    cache: { type: "string", valueName: "DIR", description: "Cache for .debs, APT indices and work trees (default: $APT_OSTREE_CACHE or /var/cache/apt-ostree)" },
    "index-max-age": { type: "string", valueName: "DURATION", default: "1h", description: "Reuse cached APT indices younger than this" },
    refresh: { type: "boolean", description: "Refresh APT indices even when the cached ones are fresh" },
    force: { type: "boolean", description: "Commit even when the tree equals the previous commit's" },
    "keep-work": { type: "boolean", description: "Keep the composed rootfs under the cache for inspection" },
    "trust-root": { type: "string", valueName: "FILE", description: "Root of trust the image's agent starts from (TRUST/root.json from 'keys init-root'); shipped in /usr/lib/apt-ostree/root.json" },
    "apt-keyring": { type: "string", valueName: "FILE", description: "The server's APT repository key (apt-repo's KEYDIR/archive-keyring.gpg): the image trusts <repo URL>/apt and its agent layers packages from it" },
    json: { type: "boolean", description: 'Print {"ref","commit","version",...} as the last line of stdout' },
  },
  notes: ["Needs root (mmdebstrap --mode=root, chroot, mounts in a private namespace)."],
  async run({ options, io }) {
    if (options.version !== undefined && !VERSION_PATTERN.test(options.version)) {
      throw new UsageError(`--version: '${options.version}' must start with a letter or digit and hold only letters, digits and . _ + ~ -`);
    }
    const maxAge = options.refresh ? 0 : parseDurationSeconds(options["index-max-age"], "index-max-age");
    // On a terminal the progress line tells the story; info events would break it up.
    const interactive = Boolean((io.stderr as NodeJS.WriteStream).isTTY);
    const log = createLogger({ name: "compose", level: io.env.APT_OSTREE_LOG_LEVEL ?? (interactive ? "warn" : "info") });
    const result = await compose({
      recipesDir: resolve(options.recipes ?? DEFAULT_RECIPES_DIR),
      image: options.image,
      machine: options.machine,
      repo: resolve(options.repo ?? defaultRepo(io.env)),
      version: options.version,
      cacheDir: resolve(options.cache ?? defaultCacheDir(io.env)),
      indexMaxAgeSeconds: maxAge,
      force: options.force,
      keepWorkDir: options["keep-work"],
      trustRoot: options["trust-root"] ? resolve(options["trust-root"]) : undefined,
      aptKeyring: options["apt-keyring"] ? resolve(options["apt-keyring"]) : undefined,
      log,
      progress: createComposeProgress(log, io.stderr as NodeJS.WriteStream),
    });
    const text = [
      `${result.changed ? "Committed" : "No changes; kept"} ${result.ref}`,
      `  Version: ${result.version} (sequence ${result.sequence})`,
      `  Commit:  ${result.commit}`,
      `  Packages: ${result.packages}${result.kernel ? `, kernel ${result.kernel}` : ""}`,
      ...(result.sizes ? [`  Size: ${formatBytes(result.sizes.unpacked)} unpacked, ${formatBytes(result.sizes.compressed)} in the repo (${result.sizes.objects} objects)`] : []),
    ].join("\n");
    printResult(io, options.json, result, text);
  },
});

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
