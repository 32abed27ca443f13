import { join, resolve } from "node:path";
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { UsageError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import { ensureArchiveKey, stopAgent } from "../apt-repo/archive-key.ts";
import { AptRepoError, buildAptRepo, checkArchitecture, checkSuiteName, publishKeyring, readDebFields, type DebFile, type SuiteContent } from "../apt-repo/build.ts";
import { archiveFileName, imageDebs, type ImageDebs } from "../apt-repo/image-debs.ts";
import { defaultCacheDir } from "../compose/cache.ts";
import { defaultRepo } from "./defaults.ts";

export function defaultAptKeyDir(env: NodeJS.ProcessEnv): string {
  return env.APT_OSTREE_APT_KEY_DIR ?? "/var/lib/apt-ostree-server/apt-archive-key";
}

export const aptRepoCommand = defineCommand({
  name: "apt-repo",
  description: "Publish, next to the OSTree repo, a signed APT repository of the exact package versions an image was composed from, plus extra .debs: what devices layer packages from (docs/layering.md).",
  options: {
    repo: { type: "string", valueName: "DIR", description: "Archive repo (default: $APT_OSTREE_REPO or /var/lib/apt-ostree-server/repo); the APT repository goes to DIR/apt, served at <repo URL>/apt" },
    ref: { type: "string", valueName: "REF", multiple: true, description: "An image ref whose packages to publish (its last --history versions), from the compose cache" },
    add: { type: "string", valueName: "FILE.deb", multiple: true, description: "An extra package to publish in the suite (repeat); a published version is never replaced" },
    distro: { type: "string", valueName: "NAME", description: "Distro of the refs' compose cache (default: the ref's first part)" },
    suite: { type: "string", valueName: "NAME", description: "Suite to publish to (default: the ref's second part, e.g. bookworm)" },
    architecture: { type: "string", valueName: "ARCH", multiple: true, description: "Architecture of the suite's indices when no --ref gives it (e.g. amd64)" },
    history: { type: "string", valueName: "N", default: "5", description: "Versions of each ref whose packages are published (devices layer against the base they run)" },
    cache: { type: "string", valueName: "DIR", description: "Compose cache (default: $APT_OSTREE_CACHE or /var/cache/apt-ostree)" },
    "key-dir": { type: "string", valueName: "DIR", description: "The archive signing key, made on first use (default: $APT_OSTREE_APT_KEY_DIR or /var/lib/apt-ostree-server/apt-archive-key)" },
    "allow-missing": { type: "boolean", description: "Publish even when some of an image's packages are no longer in the compose cache (they are listed)" },
    json: { type: "boolean", description: "Print the result as JSON as the last line of stdout" },
  },
  notes: [
    "Compose with --apt-keyring KEYDIR/archive-keyring.gpg so the image trusts the repository; its agent then adds <repo URL>/apt to the sources it layers from.",
    "Killed at any point, the repository keeps serving its previous state: pool files and by-hash indices only appear, and InRelease is replaced last.",
    "Needs apt-ftparchive (apt-utils), gpg and dpkg-deb (bash scripts/setup.sh installs them).",
  ],
  async run({ options, io }) {
    const history = Number(options.history);
    if (!Number.isInteger(history) || history < 1 || history > 1000) throw new UsageError(`--history: '${options.history}' must be 1..1000`);
    const refs = options.ref ?? [];
    const extras = options.add ?? [];
    if (refs.length === 0 && extras.length === 0) throw new UsageError("nothing to publish: give --ref REF (an image's packages) or --add FILE.deb");
    if (refs.length === 0 && (options.suite === undefined || options.architecture === undefined)) throw new UsageError("--add without --ref needs --suite and --architecture");
    const repo = resolve(options.repo ?? defaultRepo(io.env));
    const cacheDir = resolve(options.cache ?? defaultCacheDir(io.env));
    const log = createLogger({ name: "apt-repo" });
    const images: ImageDebs[] = [];
    for (const ref of refs) images.push(await imageDebs({ repo, ref, cacheDir, history, distro: options.distro, suite: options.suite }));
    const missing = images.flatMap((image) => image.missing.map((pkg) => `${image.ref}: ${archiveFileName(pkg)}`));
    if (missing.length > 0 && !options["allow-missing"]) {
      throw new AptRepoError(`${missing.length} package(s) of the image(s) are not in the compose cache, so devices could not resolve against them:\n  ${missing.slice(0, 20).join("\n  ")}${missing.length > 20 ? `\n  ... and ${missing.length - 20} more` : ""}\nCompose again on this host to download them, or pass --allow-missing`);
    }
    const extraDebs: DebFile[] = [];
    for (const file of extras) extraDebs.push(await readDebFields(resolve(file)));
    const suites = new Map<string, SuiteContent>();
    const suiteFor = (suite: string) => {
      checkSuiteName(suite);
      let content = suites.get(suite);
      if (!content) suites.set(suite, (content = { suite, architectures: [], debs: [] }));
      return content;
    };
    for (const image of images) {
      const content = suiteFor(image.suite);
      if (!content.architectures.includes(image.architecture)) content.architectures.push(image.architecture);
      content.debs.push(...image.debs);
    }
    for (const arch of options.architecture ?? []) checkArchitecture(arch, "--architecture");
    if (refs.length === 0) for (const arch of options.architecture ?? []) if (!suiteFor(options.suite!).architectures.includes(arch)) suiteFor(options.suite!).architectures.push(arch);
    for (const content of suites.values()) {
      for (const deb of extraDebs) {
        if (deb.architecture !== "all" && !content.architectures.includes(deb.architecture)) {
          throw new AptRepoError(`${deb.path}: architecture ${deb.architecture} is not one of suite ${content.suite}'s (${content.architectures.join(", ")})`);
        }
        content.debs.push(deb);
      }
    }
    const keyDir = resolve(options["key-dir"] ?? defaultAptKeyDir(io.env));
    const key = await ensureArchiveKey(keyDir, (fingerprint) => {
      log.warn({ event: "apt-repo.key.created", fingerprint, keyDir }, `made a new archive signing key ${fingerprint} in ${keyDir}: compose images with --apt-keyring ${join(keyDir, "archive-keyring.gpg")} so devices trust it`);
    });
    const dir = join(repo, "apt");
    try {
      const results = await buildAptRepo({ dir, suites: [...suites.values()], key, log });
      const keyring = await publishKeyring(dir, key);
      const result = { dir, fingerprint: key.fingerprint, keyring: key.keyring, publishedKeyring: keyring, suites: results, missing };
      const text = [
        `Published the APT repository ${dir} (signed by ${key.fingerprint})`,
        ...results.map((r) => `  ${r.suite}: ${r.packages} package(s) for ${r.architectures.join(", ")}, ${r.added} added`),
        ...(missing.length > 0 ? [`  ${missing.length} package(s) left out: not in the compose cache`] : []),
        `  Keyring: ${key.keyring} (compose --apt-keyring puts it in the image)`,
      ].join("\n");
      printResult(io, options.json, result, text);
    } finally {
      await stopAgent(key.home);
    }
  },
});
