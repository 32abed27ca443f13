/**
 * `apt-ostree-server publish`: sign the ref's commit, generate static deltas from the previous
 * K versions and from scratch, update and sign the summary, then write the signed channel
 * manifest. Each step is idempotent and the manifest is written last, so a publish killed at
 * any point leaves the previous manifest and everything it names intact, and a rerun completes.
 */
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { mapConcurrent } from "../../shared/concurrency.ts";
import { AptOstreeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { resolveRef } from "../../shared/ostree/repo.ts";
import type { Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import type { Delta, Manifest } from "../../shared/wire/manifest.ts";
import { readChannelManifest, readHighestSequence, recordHighestSequence, writeChannelManifest } from "./channel.ts";
import { ensureDelta } from "./deltas.ts";
import { commitHistory } from "./history.ts";
import { acquirePidLock } from "../../shared/fs/pid-lock.ts";
import { signCommit } from "./sign-commit.ts";
import { updateSignedSummary } from "./signed-summary.ts";
import type { SignedRoot } from "../../shared/trust/root.ts";
import { publishRoots } from "../keys/trust-dir.ts";

export interface PublishOptions {
  repo: string;
  ref: string;
  /** Legacy single key: signs the commit, the summary and the manifest. */
  key?: Ed25519KeyPair;
  /** The image role's keys (docs/trust.md): sign the commit and the summary. */
  imageKeys?: Ed25519KeyPair[];
  /** The release role's keys: sign the channel manifest. */
  releaseKeys?: Ed25519KeyPair[];
  /** Root versions copied to REPO/roots/ before the manifest, so devices can check the new keys. */
  roots?: SignedRoot[];
  channel: string;
  /** Deltas from this many previous versions, plus one from scratch. */
  deltaDepth: number;
  /** Also generate the delta from scratch (default true). Devices built from a disk image never use it; it is the slowest to make. */
  scratchDelta?: boolean;
  /** How long the manifest stays valid. */
  expiresInSeconds: number;
  /** Allow publishing a lower sequence than the channel's current one (a signed downgrade). */
  downgrade?: boolean;
  /** Deltas generated at once (default: the number of CPUs). */
  parallelism?: number;
  now?: () => Date;
  log: Logger;
  signal?: AbortSignal;
}

/** What signs a publish: the trust directory's role keys and roots, or the legacy single key. */
export type PublishKeys = Pick<PublishOptions, "key" | "imageKeys" | "releaseKeys" | "roots">;

export interface PublishResult {
  ref: string;
  commit: string;
  version: string;
  sequence: number;
  channel: string;
  /** Path of the manifest relative to the repo root. */
  manifest: string;
  deltas: Array<Delta & { generated: boolean }>;
}

export class PublishError extends AptOstreeError {
  constructor(message: string) {
    super("E_PUBLISH", message);
  }
}

/** A signed downgrade is valid for hours, not the channel's days (docs/trust.md, Anti-rollback). */
export const DOWNGRADE_LIFETIME_SECONDS = 6 * 3600;

export async function publish(options: PublishOptions): Promise<PublishResult> {
  const { repo, ref, log } = options;
  const imageKeys = options.imageKeys ?? (options.key ? [options.key] : []);
  const releaseKeys = options.releaseKeys ?? (options.key ? [options.key] : []);
  if (imageKeys.length === 0 || releaseKeys.length === 0) throw new PublishError(`publish needs ${imageKeys.length === 0 ? "an image key" : "a release key"} (--trust DIR, or --image-key and --release-key)`);
  const now = (options.now ?? (() => new Date()))();
  const commit = await resolveRef(repo, ref);
  if (commit === null) throw new PublishError(`ref '${ref}' does not exist in ${repo}; compose it first`);
  const release = await acquirePidLock(join(repo, "apt-ostree-publish.lock"), "another publish");
  try {
    const history = await commitHistory(repo, commit, options.deltaDepth);
    const { info } = history[0]!;
    const current = await readChannelManifest(repo, options.channel, ref);
    const highest = await readHighestSequence(repo, options.channel, ref, current);
    const downgrade = highest !== null && highest > info.sequence;
    if (downgrade && !options.downgrade) {
      const already = current && current.sequence === highest ? `already has ${ref} version ${current.version} (sequence ${highest})` : `has published ${ref} up to sequence ${highest}`;
      throw new PublishError(`${options.channel} ${already}; version ${info.version} (sequence ${info.sequence}) would be a downgrade: pass --downgrade to allow it`);
    }

    const signed = await signCommit(repo, commit, imageKeys);
    log.info({ event: "publish.commit.signed", commit, added: signed }, signed ? "signed the commit" : "the commit was already signed");

    const sources: Array<{ commit: string | null; version: string | null }> = [
      ...history.slice(1).map((h) => ({ commit: h.commit, version: h.info.version })),
      ...(options.scratchDelta === false ? [] : [{ commit: null, version: null }]),
    ];
    // ostree compresses delta parts on one core: generate several deltas at once.
    const deltas = await mapConcurrent(sources, options.parallelism ?? availableParallelism(), async (source) => {
      const { delta, generated } = await ensureDelta({ repo, from: source.commit, fromVersion: source.version, to: commit, signal: options.signal });
      log.info(
        { event: "publish.delta.ready", from: source.commit, fromVersion: source.version, size: delta.size, generated },
        `delta from ${source.version ?? "scratch"}: ${delta.size} bytes${generated ? "" : " (existing)"}`,
      );
      return { ...delta, generated };
    });

    await updateSignedSummary(repo, imageKeys);
    log.info({ event: "publish.summary.signed" }, "updated and signed the summary");

    if (options.roots) {
      const copied = await publishRoots(options.roots, repo);
      if (copied.length > 0) log.info({ event: "publish.roots.copied", versions: copied }, `published root version(s) ${copied.join(", ")}`);
    }
    const manifest: Manifest = {
      schema: 1,
      ref,
      commit,
      version: info.version,
      sequence: info.sequence,
      architecture: info.architecture,
      channel: options.channel,
      issued: now.toISOString(),
      expires: new Date(now.getTime() + (downgrade ? Math.min(options.expiresInSeconds, DOWNGRADE_LIFETIME_SECONDS) : options.expiresInSeconds) * 1000).toISOString(),
      downgrade,
      deltas: deltas.map(({ generated: _generated, ...delta }) => delta),
    };
    await recordHighestSequence(repo, options.channel, ref, info.sequence, highest);
    const manifestFile = await writeChannelManifest(repo, manifest, releaseKeys);
    log.info({ event: "publish.manifest.written", manifest: manifestFile, version: info.version }, `published ${ref} ${info.version}`);
    return { ref, commit, version: info.version, sequence: info.sequence, channel: options.channel, manifest: manifestFile, deltas };
  } finally {
    await release();
  }
}
