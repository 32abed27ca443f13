/**
 * A new release made from a published one without composing again: the parent commit's tree
 * with some files added or replaced (`ostree commit --tree=ref=PARENT --tree=dir=OVERLAY`),
 * its apt-ostree metadata carried over with the next version and sequence, then signed and
 * published like any release. The end-to-end test makes v2 (a marker file), v3 (a failing
 * required health check) and v4 (an init that exits) this way in seconds instead of a compose
 * each.
 */
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { META, encodeImageCommitMetadata, readImageCommitInfo } from "../../shared/image/commit-metadata.ts";
import type { Logger } from "../../shared/log.ts";
import { commitTree } from "../../shared/ostree/commit.ts";
import { metadataString, parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { readCommitObject, resolveRef } from "../../shared/ostree/repo.ts";
import { publish, type PublishKeys } from "../../server/publish/publish.ts";

export interface OverlayFile {
  content: string | Uint8Array;
  mode?: number;
}

export async function publishDerivedRelease(options: {
  repo: string;
  ref: string;
  /** The signing keys: a trust directory's roles (trustPublishKeys) or a legacy single key. */
  keys: PublishKeys;
  workDir: string;
  /** Paths inside the image (no leading /; /etc is usr/etc in a commit). */
  files: Record<string, OverlayFile>;
  /** The tree to start from (default: the ref's head). Version and sequence always follow the head. */
  base?: string;
  /** How long the channel manifest stays valid (default a day). */
  expiresInSeconds?: number;
  log: Logger;
}): Promise<{ commit: string; version: string }> {
  const head = await resolveRef(options.repo, options.ref);
  if (!head) throw new Error(`${options.repo} has no ${options.ref} to derive from`);
  const parent = options.base ?? head;
  const parentCommit = parseCommitObject(await readCommitObject(options.repo, parent));
  const info = readImageCommitInfo(parseCommitObject(await readCommitObject(options.repo, head)), "head commit");
  const version = String(Number(info.version) + 1);
  const overlay = join(options.workDir, `overlay-${version}`);
  await rm(overlay, { recursive: true, force: true });
  for (const [path, file] of Object.entries(options.files)) {
    await mkdir(dirname(join(overlay, path)), { recursive: true });
    await writeFile(join(overlay, path), file.content);
    await chmod(join(overlay, path), file.mode ?? 0o644);
  }
  const sourceDateEpoch = Number(metadataString(parentCommit, META.sourceDateEpoch));
  const commit = await commitTree({
    repo: options.repo,
    tree: overlay,
    baseRevision: parent,
    branch: options.ref,
    subject: `${info.image} ${version} (derived from ${parent.slice(0, 12)})`,
    parent: head,
    timestamp: sourceDateEpoch + info.sequence,
    ...encodeImageCommitMetadata({ ...info, version, sequence: info.sequence + 1, sourceDateEpoch, kernel: metadataString(parentCommit, META.linux) ?? null }),
  });
  await publish({ repo: options.repo, ref: options.ref, ...options.keys, channel: "stable", deltaDepth: 3, scratchDelta: false, expiresInSeconds: options.expiresInSeconds ?? 86400, log: options.log });
  return { commit, version };
}
