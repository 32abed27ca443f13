import { runOstree } from "./exec.ts";

export interface CommitSizes {
  /** Bytes of the commit's objects as stored compressed in an archive repo. */
  compressed: number;
  unpacked: number;
  objects: number;
}

/** Pure parser of `ostree show --print-sizes` (needs a commit made with --generate-sizes). */
export function parseCommitSizes(text: string): CommitSizes | null {
  const total = (label: string): number | null => {
    const match = new RegExp(`^${label} \\(needed/total\\): [\\d,.]+(?: bytes)?/([\\d,.]+)`, "m").exec(text);
    return match ? Number(match[1]!.replace(/[,.]/g, "")) : null;
  };
  const compressed = total("Compressed size");
  const unpacked = total("Unpacked size");
  const objects = total("Number of objects");
  return compressed === null || unpacked === null || objects === null ? null : { compressed, unpacked, objects };
}

export async function commitSizes(repo: string, commit: string): Promise<CommitSizes | null> {
  return parseCommitSizes(await runOstree(["show", `--repo=${repo}`, "--print-sizes", commit]));
}

export async function repoMode(repo: string): Promise<string> {
  return (await runOstree(["config", `--repo=${repo}`, "get", "core.mode"])).trim();
}
