/** Resolves what a user typed for a revision (a commit checksum or a version) to a composed commit. */
import { AptOstreeError } from "../../shared/errors.ts";
import { readImageCommitInfo, type ImageCommitInfo } from "../../shared/image/commit-metadata.ts";
import { parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { listRefs, readCommitObject, resolveRef } from "../../shared/ostree/repo.ts";
import { commitHistory } from "../publish/history.ts";

export class RevisionNotFoundError extends AptOstreeError {
  constructor(message: string) {
    super("E_REVISION_NOT_FOUND", message);
  }
}

export interface Revision {
  commit: string;
  info: ImageCommitInfo;
}

const HISTORY_LIMIT = 10_000;

export async function resolveRevision(repo: string, spec: string, ref?: string): Promise<Revision> {
  if (/^[0-9a-f]{64}$/.test(spec)) {
    const bytes = await readCommitObject(repo, spec).catch(() => {
      throw new RevisionNotFoundError(`commit ${spec} is not in ${repo}`);
    });
    return { commit: spec, info: readImageCommitInfo(parseCommitObject(bytes), `commit ${spec.slice(0, 12)}`) };
  }
  const refs = ref ? [ref] : await listRefs(repo);
  const found = new Map<string, Revision & { ref: string }>();
  for (const candidate of refs) {
    const head = await resolveRef(repo, candidate);
    if (head === null) throw new RevisionNotFoundError(`ref '${candidate}' does not exist in ${repo}`);
    for (const entry of await commitHistory(repo, head, HISTORY_LIMIT).catch(() => [])) {
      if (entry.info.version === spec && !found.has(entry.commit)) found.set(entry.commit, { ...entry, ref: candidate });
    }
  }
  if (found.size === 0) throw new RevisionNotFoundError(`no version '${spec}' on ${ref ? `ref '${ref}'` : `any ref in ${repo}`}; give a version or a full commit checksum`);
  if (found.size > 1) {
    throw new RevisionNotFoundError(`version '${spec}' exists on several refs (${[...found.values()].map((r) => r.ref).join(", ")}); pass --ref`);
  }
  return [...found.values()][0]!;
}
