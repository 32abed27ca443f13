import type { CommitObject } from "./commit-object.ts";
import { runOstree } from "./exec.ts";

export interface CommitSizes {
  /** Bytes of the commit's content objects as stored (compressed) in an archive repo. */
  compressed: number;
  /** Bytes of the same objects unpacked. */
  unpacked: number;
  objects: number;
}

/**
 * Totals of the `ostree.sizes` metadata that `ostree commit --generate-sizes` writes: one `ay`
 * per object, its 32-byte checksum then two varints (archived, unpacked size) and a type byte.
 */
export function commitSizes(commit: CommitObject): CommitSizes | null {
  const sizes = commit.metadata.get("ostree.sizes");
  if (sizes?.type !== "aay") return null;
  let compressed = 0;
  let unpacked = 0;
  const entries = sizes.value as Uint8Array[];
  for (const entry of entries) {
    const archived = readVarint(entry, 32);
    const plain = readVarint(entry, archived.next);
    compressed += archived.value;
    unpacked += plain.value;
  }
  return { compressed, unpacked, objects: entries.length };
}

function readVarint(bytes: Uint8Array, start: number): { value: number; next: number } {
  let value = 0;
  let shift = 0;
  let at = start;
  for (;;) {
    const byte = bytes[at++];
    if (byte === undefined) throw new RangeError("truncated varint in ostree.sizes");
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return { value, next: at };
    shift += 7;
  }
}

export async function repoMode(repo: string): Promise<string> {
  return (await runOstree(["config", `--repo=${repo}`, "get", "core.mode"])).trim();
}
