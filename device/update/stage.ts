/**
 * Brings a verified manifest's commit into the sysroot and deploys it: the static delta from the
 * booted commit, downloaded by us (download.ts) and applied with `ostree static-delta
 * apply-offline`, or else `ostree pull` of the exact commit; then the commit's ed25519
 * signature and checksum are checked in TypeScript (Debian's ostree cannot, DESIGN.md 5.4)
 * before the ref moves and `ostree admin deploy` runs. A commit that fails verification is
 * pruned again: the sysroot ends as it started.
 */
import type { Signers } from "../../shared/trust/signers.ts";
import { mkdir, rm, stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import { mapConcurrent } from "../../shared/concurrency.ts";
import { AptOstreeError, errorChain } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { runOstree } from "../../shared/ostree/exec.ts";
import { metadataString, parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { META } from "../../shared/image/commit-metadata.ts";
import { readCommitObject, readDetachedMetadata, setRef } from "../../shared/ostree/repo.ts";
import { verifyCommit } from "../../shared/verify/commit.ts";
import type { Delta, Manifest } from "../../shared/wire/manifest.ts";
import { deploymentsAfterDeploy, sysrootRepo, type Deployment } from "../sysroot/deployments.ts";
import { carryLayer, requestToCarry } from "../layering/carry.ts";
import type { ServerAptSource } from "../layering/apt-sources.ts";
import { syncBaseRefs } from "../layering/base-refs.ts";
import { deployRetaining } from "../sysroot/deploy.ts";
import { DownloadError, downloadVerified } from "./download.ts";
import { trustedCaFile } from "./load-http-client.ts";

export class StageError extends AptOstreeError {
  readonly retryable: boolean;
  /**
   * The device's surroundings failed, not the update (the network away, /var full): the agent
   * tries again for as long as it lasts, without spending one of the update's attempts.
   */
  readonly transient: boolean;
  constructor(message: string, retryable: boolean, cause?: unknown, transient = false) {
    super("E_STAGE", message, { cause });
    this.retryable = retryable || transient;
    this.transient = transient;
  }
}

/** ostree's words (and the kernel's) for a full filesystem: no space, or its min-free-space guard. */
export function isOutOfSpace(error: unknown): boolean {
  for (let e = error; e; e = (e as { cause?: unknown }).cause) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOSPC" || code === "EDQUOT" || code === "E_DOWNLOAD_NO_SPACE") return true;
    if (/No space left on device|min-free-space|Disk quota exceeded/i.test(String((e as Error).message ?? ""))) return true;
  }
  return false;
}

/** Room a delta needs beyond its own bytes: ostree's objects while it applies, and the system's own writes. */
const SPACE_MARGIN_BYTES = 32 * 1024 * 1024;

export interface StageRequest {
  sysroot: string;
  /** The running root, to tell which deployment is booted (see deployments.ts). */
  rootDir: string;
  osname: string;
  /** The repo's base URL, e.g. http://server:8080/repo */
  repoUrl: string;
  manifest: Manifest;
  /** The sysroot's deployments now (the booted one's delta is fetched; pruning after the deploy needs them). */
  deployments: Deployment[];
  /** The image role's keys: the commit must carry their signatures. */
  imageSigners: Signers;
  /** Where delta files are downloaded (kept across restarts so downloads resume). */
  downloadDir: string;
  /** `--stage` (a booted system) or a plain deploy (a sysroot that is not booted). */
  stage: boolean;
  stallMs: number;
  onProgress: (bytes: number, total: number) => void;
  /** Cancels the download (the operator's `apt-ostree cancel`). */
  signal?: AbortSignal;
  log: Logger;
  /** Package layering's APT configuration and state: the default deployment's layer is carried onto the new base (docs/layering.md). */
  layering?: { aptEtc: string; stateDir: string; serverSource: ServerAptSource | null };
}

export const REMOTE_NAME = "apt-ostree";

/** A commit in a local repo: it is the commit named and carries valid OSTree ed25519 signatures by the image keys. Returns the commit object. */
export async function verifyCommitInRepo(repo: string, checksum: string, imageSigners: Signers): Promise<Uint8Array> {
  const commitObject = await readCommitObject(repo, checksum).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") throw new AptOstreeError("E_UNKNOWN_COMMIT", `commit ${checksum} is not in ${repo}`, { cause: error });
    throw error;
  });
  verifyCommit({ checksum, commitObject, detachedMetadata: await readDetachedMetadata(repo, checksum) }, imageSigners);
  return commitObject;
}

/**
 * The sequence anti-rollback compares is the one the image key signed into the commit: a
 * manifest (signed by the release key alone) that names another is refused.
 */
function checkCommitSequence(commitObject: Uint8Array, manifest: Manifest): void {
  const signed = metadataString(parseCommitObject(commitObject), META.sequence);
  if (signed === undefined || Number(signed) !== manifest.sequence) {
    throw new AptOstreeError("E_COMMIT_SEQUENCE_MISMATCH", `the commit's signed sequence is ${signed ?? "missing"}, the manifest says ${manifest.sequence}`);
  }
}

export function deltaFor(manifest: Manifest, bootedCommit: string | null): Delta | null {
  return bootedCommit === null ? null : (manifest.deltas.find((d) => d.from === bootedCommit) ?? null);
}

export interface StageResult {
  via: "delta" | "pull";
  bytes: number;
  /** The sysroot's deployments as ostree now lists them (deploymentsAfterDeploy; not read back). */
  deployments: Deployment[];
}

export async function stageUpdate(request: StageRequest): Promise<StageResult> {
  const { manifest, log } = request;
  const repo = sysrootRepo(request.sysroot);
  const delta = deltaFor(manifest, request.deployments.find((d) => d.booted)?.base ?? null);
  let bytes = 0;
  try {
    // Already whole in the repo (an earlier attempt got as far as the deploy): nothing to fetch.
    if (await commitIsComplete(repo, manifest.commit)) log.info({ event: "stage.fetch.skipped", commit: manifest.commit }, `${manifest.version} is already in the repo`);
    else if (delta) bytes = await fetchDelta(request, delta);
    else await pullCommit(request);
  } catch (error) {
    if (error instanceof StageError) throw error;
    if (isOutOfSpace(error)) {
      // What this attempt downloaded goes: the space is the running system's.
      await discardDownloads(request.downloadDir).catch(() => undefined);
      // Writing the download: waited out (the check before the next try waits without the network).
      if (error instanceof DownloadError) throw new StageError(`cannot fetch ${manifest.version}: out of space (${errorChain(error)}); waiting for space`, true, error, true);
      // Applying it, past that check: an attempt spent, so a disk the check misjudges is not downloaded for ever.
      throw new StageError(`cannot apply ${manifest.version}: out of space (${errorChain(error)})`, true, error);
    }
    if (error instanceof DownloadError) throw new StageError(error.message, error.retryable, error, error.transient);
    if (error instanceof AptOstreeError && error.code === "E_DELTA_FILE_MISMATCH") throw new StageError(error.message, true, error);
    throw new StageError(`cannot fetch ${manifest.version}: ${errorChain(error)}`, true, error);
  }
  let commitObject: Uint8Array;
  try {
    commitObject = await verifyCommitInRepo(repo, manifest.commit, request.imageSigners);
    checkCommitSequence(commitObject, manifest);
  } catch (error) {
    await runOstree(["prune", `--repo=${repo}`, "--refs-only"]).catch((pruneError: Error) => log.warn({ event: "stage.prune.failed", err: pruneError }, "could not prune the refused commit"));
    throw new StageError(`refusing ${manifest.version} (${manifest.commit.slice(0, 12)}): ${errorChain(error)}`, false, error);
  }
  let deployed = manifest.commit;
  let carried: LayerOutcomeNames | null = null;
  try {
    // Before the followed ref moves on: it may be all that held the base of a layered deployment.
    await syncBaseRefs(repo, request.deployments);
    await setRef(repo, manifest.ref, manifest.commit);
    const layer = request.layering ? await requestToCarry(repo, request.deployments) : null;
    if (layer && request.layering) {
      const result = await carryLayer({ repo, base: manifest.commit, request: layer, ...request.layering, log, ...(request.signal ? { signal: request.signal } : {}) }).catch((error: unknown) => {
        // The reason (a package gone from the sources, a conflict with the new base) is the update's
        // failure; a mirror that could not be reached is worth another try.
        throw new StageError(`cannot carry the layered packages onto ${manifest.version}: ${errorChain(error)}`, isOutOfSpace(error) || unreachableSources(error), error);
      });
      deployed = result.commit;
      carried = result.layered;
      log.info({ event: "stage.layer.carried", base: manifest.commit, commit: deployed }, `carried the layered packages onto ${manifest.version}`);
    }
    await deployRetaining({ sysroot: request.sysroot, rootDir: request.rootDir, osname: request.osname, revision: layer ? deployed : manifest.ref, ...(layer ? { originRefspec: manifest.ref } : {}), stage: request.stage, before: request.deployments });
  } catch (error) {
    if (error instanceof StageError) throw error;
    // Out of space: another attempt, which finds the commit in the repo and only deploys.
    throw new StageError(`cannot deploy ${manifest.version}: ${errorChain(error)}`, isOutOfSpace(error), error);
  }
  log.info({ event: "stage.deployed", commit: manifest.commit, deployed, version: manifest.version, via: delta ? "delta" : "pull", bytes }, `${request.stage ? "staged" : "deployed"} ${manifest.version}`);
  const deployments = deploymentsAfterDeploy(request.deployments, {
    osname: request.osname,
    checksum: deployed,
    base: manifest.commit,
    ...(carried ? { layered: carried } : {}),
    version: manifest.version,
    origin: manifest.ref,
    timestamp: parseCommitObject(commitObject).timestamp,
    staged: request.stage,
  });
  // The new base held by a ref of its own too, and the bases of deployments the deploy dropped let go.
  if (carried) await syncBaseRefs(repo, deployments).catch((error: unknown) => log.warn({ event: "stage.base-refs.failed", err: error }, `cannot update the base refs: ${errorChain(error)}`));
  return { via: delta ? "delta" : "pull", bytes, deployments };
}

type LayerOutcomeNames = NonNullable<Deployment["layered"]>;

/** apt could not reach a source (DNS, connection, a mirror's error): the network's fault, not the request's. */
function unreachableSources(error: unknown): boolean {
  // A source whose indices could not be fetched or verified (the server's APT repository not yet
  // published, a mirror mid-sync) may be right on the next attempt.
  return /Failed to fetch|Temporary failure resolving|Could not connect|Could not resolve|Connection failed|Unable to connect|fetching package indices \(apt-get update\) failed/.test(errorChain(error));
}

/** The commit object is in the repo and no pull or apply of it was left half-way (ostree's commitpartial marker). */
async function commitIsComplete(repo: string, commit: string): Promise<boolean> {
  if (await stat(join(repo, "state", `${commit}.commitpartial`)).catch(() => null)) return false;
  return readCommitObject(repo, commit).then(() => true, () => false);
}

/** Delta files fetched at once: a few connections hide each request's latency, as ostree's fetcher does. */
const DOWNLOADS_IN_FLIGHT = 4;

async function fetchDelta(request: StageRequest, delta: Delta): Promise<number> {
  const superblock = delta.files.find((f) => f.path.endsWith("/superblock"));
  if (!superblock) throw new StageError("the manifest's delta lists no superblock", false);
  await checkRoomFor(request, delta);
  const done = new Map<string, number>();
  const report = () => request.onProgress([...done.values()].reduce((a, b) => a + b, 0), delta.size);
  // The first failure stops the other downloads, and they settle before it is thrown: a retry
  // must not find a download from this attempt still writing to a part file.
  const abort = new AbortController();
  const onCancel = () => abort.abort();
  request.signal?.addEventListener("abort", onCancel, { once: true });
  let failure: { error: unknown } | null = null;
  try {
    await mapConcurrent(delta.files, DOWNLOADS_IN_FLIGHT, async (file) => {
      if (failure) return;
      try {
        await downloadVerified(`${request.repoUrl}/${file.path}`, join(request.downloadDir, file.path), file, {
          stallMs: request.stallMs,
          signal: abort.signal,
          onBytes: (n) => {
            done.set(file.path, n);
            report();
          },
        });
        done.set(file.path, file.size);
        report();
      } catch (error) {
        failure ??= { error };
        abort.abort();
      }
    });
  } finally {
    request.signal?.removeEventListener("abort", onCancel);
  }
  if (failure) throw (failure as { error: unknown }).error;
  await runOstree(["static-delta", "apply-offline", `--repo=${sysrootRepo(request.sysroot)}`, join(request.downloadDir, superblock.path)]);
  await discardDownloads(request.downloadDir);
  return delta.size;
}

/**
 * Refuses to start a download that cannot fit, before a byte is fetched: the delta's bytes still
 * missing, room to apply it (about its size again) and a margin. A transient StageError, so the
 * agent waits for space without using the network.
 */
async function checkRoomFor(request: StageRequest, delta: Delta): Promise<void> {
  await mkdir(request.downloadDir, { recursive: true }).catch((error: unknown) => {
    if (isOutOfSpace(error)) throw new StageError(`cannot create ${request.downloadDir}: out of space; waiting for space`, true, error, true);
    throw error;
  });
  let have = 0;
  for (const file of delta.files) {
    const path = join(request.downloadDir, file.path);
    have += Math.min(file.size, (await stat(path).catch(() => null))?.size ?? (await stat(`${path}.part`).catch(() => null))?.size ?? 0);
  }
  const fs = await statfs(request.downloadDir);
  const free = fs.bavail * fs.bsize;
  // ostree keeps min-free-space-percent (3 by default) of the filesystem free while it writes.
  const reserve = Math.ceil(fs.blocks * fs.bsize * 0.03);
  const needed = delta.size - have + delta.size + reserve + SPACE_MARGIN_BYTES;
  if (free < needed) {
    const mib = (n: number) => `${Math.ceil(n / 1048576)} MiB`;
    throw new StageError(`not enough space for ${request.manifest.version}: ${mib(free)} free under ${request.downloadDir}, the update needs ${mib(needed)} (its delta, room to apply it, ostree's 3% reserve and a margin); waiting for space`, true, undefined, true);
  }
}

/** Removes the delta files downloaded into `downloadDir`: once applied, or once the update failed for good. */
export async function discardDownloads(downloadDir: string): Promise<void> {
  await rm(join(downloadDir, "deltas"), { recursive: true, force: true });
}

async function pullCommit(request: StageRequest): Promise<void> {
  const repo = sysrootRepo(request.sysroot);
  await runOstree(["remote", "delete", `--repo=${repo}`, "--if-exists", REMOTE_NAME]);
  // ostree's fetcher trusts the agent's CA alone for an https:// repo, as the agent's own client does.
  const caFile = request.repoUrl.startsWith("https://") ? trustedCaFile() : null;
  await runOstree(["remote", "add", `--repo=${repo}`, "--no-gpg-verify", ...(caFile ? [`--set=tls-ca-path=${caFile}`] : []), REMOTE_NAME, request.repoUrl]);
  request.onProgress(0, 0);
  await runOstree(["pull", `--repo=${repo}`, REMOTE_NAME, request.manifest.commit]);
}
