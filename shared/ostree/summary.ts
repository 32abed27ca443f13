import { runOstree } from "./exec.ts";

/** `ostree summary -u`: rewrites `summary` (and `delta-indexes/` when indexed) and deletes `summary.sig`. */
export async function updateSummary(repo: string): Promise<void> {
  await runOstree(["summary", `--repo=${repo}`, "--update"]);
}
