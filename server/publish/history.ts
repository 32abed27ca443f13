import { parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { readCommitObject } from "../../shared/ostree/repo.ts";
import { readImageCommitInfo, type ImageCommitInfo } from "../../shared/image/commit-metadata.ts";

export interface HistoryEntry {
  commit: string;
  info: ImageCommitInfo;
}

/** The commit and up to `depth` ancestors present in the repo, newest first. */
export async function commitHistory(repo: string, commit: string, depth: number): Promise<HistoryEntry[]> {
  const entries: HistoryEntry[] = [];
  let current: string | null = commit;
  while (current !== null && entries.length <= depth) {
    const bytes = await readCommitObject(repo, current).catch(() => null);
    if (bytes === null) break; // pruned or never pulled: history ends here
    const object = parseCommitObject(bytes);
    entries.push({ commit: current, info: readImageCommitInfo(object, `commit ${current.slice(0, 12)}`) });
    current = object.parent;
  }
  return entries;
}
