/**
 * `apt-ostree-server compose`: recipe -> resolved packages -> mmdebstrap rootfs -> image
 * customisation -> kernel and initramfs -> OSTree layout -> commit with metadata.
 */
import { readArchiveKeyring } from "../apt-repo/archive-key.ts";
import { mkdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { AptOstreeError } from "../../shared/errors.ts";
import { encodeImageCommitMetadata, readImageCommitInfo } from "../../shared/image/commit-metadata.ts";
import type { Logger } from "../../shared/log.ts";
import { commitTree } from "../../shared/ostree/commit.ts";
import { parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { initRepo, readCommitObject, resolveRef, setRef } from "../../shared/ostree/repo.ts";
import { commitSizes, repoMode, type CommitSizes } from "../../shared/ostree/show.ts";
import type { CommitObject } from "../../shared/ostree/commit-object.ts";
import { refreshIndices, resolvePackages } from "./apt.ts";
import { aptCachePaths, createWorkDir } from "./cache.ts";
import { customizeRootfs } from "./customize.ts";
import { parseDpkgStatus } from "../../shared/apt/dpkg-status.ts";
import { installKernel } from "./kernel.ts";
import { DPKG_DATABASE, convertToOstreeLayout } from "./layout.ts";
import type { ComposeProgress } from "./progress.ts";
import { loadRecipe } from "./recipe.ts";
import { buildRootfs } from "./rootfs.ts";
import { commitHistory } from "../publish/history.ts";
import { nextVersion } from "./version.ts";
import { serializeSignedRoot, verifyRootSelf } from "../../shared/trust/root.ts";

export interface ComposeOptions {
  recipesDir: string;
  image: string;
  machine: string;
  /** Archive repo; created when missing. */
  repo: string;
  /** Version string; default: the previous version on the ref, incremented. */
  version?: string;
  cacheDir: string;
  /** Reuse cached APT indices younger than this (seconds). */
  indexMaxAgeSeconds: number;
  /** Commit even when the tree equals the previous commit's. */
  force?: boolean;
  /** Keep the work directory (rootfs) for inspection. */
  keepWorkDir?: boolean;
  /** A root.json the image ships in /usr/lib/apt-ostree/ (docs/trust.md); verified before anything is built. */
  trustRoot?: string;
  /** The server's APT repository key (apt-repo's archive-keyring.gpg), for package layering. */
  aptKeyring?: string;
  log: Logger;
  progress: ComposeProgress;
  signal?: AbortSignal;
}

export interface ComposeResult {
  ref: string;
  commit: string;
  version: string;
  sequence: number;
  /** False when the tree equalled the previous commit's and nothing was committed. */
  changed: boolean;
  packages: number;
  kernel: string | null;
  sizes: CommitSizes | null;
  /** APT index files downloaded (0 when the cached ones were fresh). */
  indicesFetched: number;
  /** .debs downloaded (0 when the cache had them all). */
  packagesFetched: number;
}

export class ComposeError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_COMPOSE", message, { cause });
  }
}

/** The root file an image will ship: it must verify on its own, and there must be an agent to read it. */
async function readTrustRoot(file: string, agent: boolean): Promise<string> {
  if (!agent) throw new ComposeError(`--trust-root: the recipe installs no agent (apt-ostree-agent: true) to use ${file}`);
  const bytes = await readFile(file).catch((error: Error) => {
    throw new ComposeError(`--trust-root: cannot read ${file}: ${error.message}`, error);
  });
  return serializeSignedRoot(verifyRootSelf(bytes, file));
}

export async function compose(options: ComposeOptions): Promise<ComposeResult> {
  const { log, progress } = options;
  progress.phase("recipe", `${options.image} for ${options.machine}`);
  const recipe = await loadRecipe(options.recipesDir, options.image, options.machine);
  const trustRoot = options.trustRoot === undefined ? null : await readTrustRoot(options.trustRoot, recipe.agent);
  if (options.aptKeyring !== undefined && !recipe.agent) throw new ComposeError(`--apt-keyring: the recipe installs no agent (apt-ostree-agent: true) to layer packages with ${options.aptKeyring}`);
  const aptKeyring = options.aptKeyring === undefined ? null : await readArchiveKeyring(options.aptKeyring);
  const cache = await aptCachePaths(options.cacheDir, recipe);

  progress.phase("apt", "refreshing package indices");
  const indicesFetched = await refreshIndices(recipe, cache, options.indexMaxAgeSeconds);
  progress.phase("apt", "resolving packages");
  const resolved = await resolvePackages(recipe, cache);
  log.info({ event: "compose.resolved", packages: resolved.length, indicesFetched }, `resolved ${resolved.length} packages`);

  await ensureArchiveRepo(options.repo);
  const previous = await previousCommit(options.repo, recipe.ref);
  if (options.version !== undefined) await refuseDuplicateVersion(options.repo, recipe.ref, previous?.commit ?? null, options.version);

  const work = await createWorkDir(options.cacheDir);
  try {
    const root = join(work, "rootfs");
    await mkdir(root);
    const packagesFetched = await buildRootfs({ recipe, cache, target: root, expectedPackages: resolved.length, progress, signal: options.signal });
    await customizeRootfs(root, recipe, progress, work, { trustRoot, aptKeyring });
    const kernel = await installKernel(root, recipe, progress);
    const installed = parseDpkgStatus(await readFile(join(root, "var/lib/dpkg/status"), "utf8"));
    progress.phase("layout", "converting to the OSTree layout");
    const layout = await convertToOstreeLayout(root);
    log.info({ event: "compose.layout", ...layout, kernel }, "converted to the OSTree layout");
    if (!(await stat(join(root, DPKG_DATABASE, "status")).catch(() => null))) throw new ComposeError("the dpkg database did not move under /usr");

    const version = options.version ?? nextVersion(previous?.version ?? null);
    const sequence = (previous?.sequence ?? 0) + 1;
    progress.phase("commit", `${recipe.ref} version ${version}`);
    const commit = await commitTree({
      repo: options.repo,
      tree: root,
      branch: recipe.ref,
      subject: `${recipe.image} ${version} for ${recipe.machine}`,
      timestamp: recipe.sourceDateEpoch,
      ...encodeImageCommitMetadata({
        version,
        sequence,
        architecture: recipe.architecture,
        machine: recipe.machine,
        image: recipe.image,
        recipeDigest: recipe.digest,
        sourceDateEpoch: recipe.sourceDateEpoch,
        kernel,
        kernelArgs: recipe.kernelArgs,
        packages: installed,
      }),
      signal: options.signal,
    });

    const created = await readCommit(options.repo, commit);
    if (previous && !options.force && sameTree(created, previous.object)) {
      await setRef(options.repo, recipe.ref, previous.commit);
      log.info({ event: "compose.unchanged", commit: previous.commit, version: previous.version }, `no changes since version ${previous.version}`);
      return { ref: recipe.ref, commit: previous.commit, version: previous.version, sequence: previous.sequence, changed: false, packages: installed.length, kernel, sizes: commitSizes(previous.object), indicesFetched, packagesFetched };
    }
    const sizes = commitSizes(created);
    log.info({ event: "compose.committed", ref: recipe.ref, commit, version, sequence, sizes }, `committed ${recipe.ref} ${version}`);
    return { ref: recipe.ref, commit, version, sequence, changed: true, packages: installed.length, kernel, sizes, indicesFetched, packagesFetched };
  } finally {
    if (!options.keepWorkDir) await rm(work, { recursive: true, force: true });
    progress.done();
  }
}

/** Versions name releases to people and devices: two commits of a ref may not share one. */
async function refuseDuplicateVersion(repo: string, ref: string, head: string | null, version: string): Promise<void> {
  if (head === null) return;
  const existing = (await commitHistory(repo, head, Number.MAX_SAFE_INTEGER)).find((entry) => entry.info.version === version);
  if (existing) {
    throw new ComposeError(`version ${version} already exists on ${ref} (commit ${existing.commit.slice(0, 12)}); choose another --version or omit it to get the next one`);
  }
}

async function ensureArchiveRepo(repo: string): Promise<void> {
  if (!(await stat(join(repo, "config")).catch(() => null))) {
    await initRepo(repo, "archive");
    return;
  }
  const mode = await repoMode(repo);
  if (mode !== "archive-z2" && mode !== "archive") {
    throw new ComposeError(`${repo} is a '${mode}' repo; compose writes to an archive repo that can be served over HTTP`);
  }
}

async function readCommit(repo: string, commit: string): Promise<CommitObject> {
  return parseCommitObject(await readCommitObject(repo, commit));
}

async function previousCommit(repo: string, ref: string): Promise<{ commit: string; version: string; sequence: number; object: CommitObject } | null> {
  const commit = await resolveRef(repo, ref);
  if (commit === null) return null;
  const object = await readCommit(repo, commit);
  const info = readImageCommitInfo(object, `${ref} (${commit.slice(0, 12)})`);
  return { commit, version: info.version, sequence: info.sequence, object };
}

function sameTree(a: CommitObject, b: CommitObject): boolean {
  return a.rootTree === b.rootTree && a.rootMeta === b.rootMeta;
}
