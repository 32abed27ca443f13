import { mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "../fs/atomic-write.ts";
import { runOstree } from "./exec.ts";

export type RepoMode = "archive" | "bare" | "bare-user" | "bare-user-only";

/** Creates a repo (and its directory) unless one exists; archive repos get indexed deltas. */
export async function initRepo(repo: string, mode: RepoMode): Promise<void> {
  await mkdir(repo, { recursive: true });
  await runOstree(["init", `--repo=${repo}`, `--mode=${mode}`]);
  if (mode === "archive") await runOstree(["config", `--repo=${repo}`, "set", "core.indexed-deltas", "true"]);
}

/** The commit a ref points to, or null when the ref does not exist. */
export async function resolveRef(repo: string, ref: string): Promise<string | null> {
  const out = await runOstree(["rev-parse", `--repo=${repo}`, ref]).catch((error: unknown) => {
    if (/not found|No such/i.test((error as Error).message)) return null;
    throw error;
  });
  return out === null ? null : out.trim();
}

/** Points `ref` at `commit`, creating the ref or moving it (to any commit, not only descendants). */
export async function setRef(repo: string, ref: string, commit: string): Promise<void> {
  if (!OSTREE_REF.test(ref)) throw new RangeError(`'${ref}' is not a valid OSTree ref name`);
  if (!/^[0-9a-f]{64}$/.test(commit)) throw new RangeError(`'${commit}' is not a commit checksum`);
  // What `ostree refs --create --force` writes (a loose ref), without a process per update.
  const path = join(repo, "refs", "heads", ref);
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, `${commit}\n`);
}

/** libostree's OSTREE_REF_REGEXP: slash-separated parts that start with a letter or digit. */
const OSTREE_REF = /^(?:[\w\d][-._\w\d]*\/)*[\w\d][-._\w\d]*$/;

export function objectPath(repo: string, checksum: string, extension: "commit" | "commitmeta" | "dirtree" | "dirmeta" | "filez" | "file"): string {
  return join(repo, "objects", checksum.slice(0, 2), `${checksum.slice(2)}.${extension}`);
}

export async function readCommitObject(repo: string, checksum: string): Promise<Buffer> {
  return readFile(objectPath(repo, checksum, "commit"));
}

/** Detached metadata bytes of a commit, or null when it has none. */
export async function readDetachedMetadata(repo: string, checksum: string): Promise<Buffer | null> {
  return readFile(objectPath(repo, checksum, "commitmeta")).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw error;
  });
}

/** Every ref in the repo (`ostree refs`), sorted. */
export async function listRefs(repo: string): Promise<string[]> {
  const out = await runOstree(["refs", `--repo=${repo}`]);
  return out.split("\n").map((line) => line.trim()).filter(Boolean).sort();
}
