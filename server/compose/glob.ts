/** Root-relative patterns for `remove-files`: `*` and `?` within a path segment, no `**`. */
import { readdir } from "node:fs/promises";
import { join } from "node:path";

export function segmentPattern(segment: string): RegExp {
  const body = segment.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]");
  return new RegExp(`^${body}$`);
}

/** The existing paths under `root` that match `pattern`, relative to root, sorted. */
export async function expandPattern(root: string, pattern: string): Promise<string[]> {
  let matches = [""];
  for (const segment of pattern.split("/").filter(Boolean)) {
    const next: string[] = [];
    for (const base of matches) {
      if (!/[*?]/.test(segment)) {
        next.push(join(base, segment));
        continue;
      }
      const names = await readdir(join(root, base)).catch(() => [] as string[]);
      const regex = segmentPattern(segment);
      next.push(...names.filter((name) => regex.test(name)).sort().map((name) => join(base, name)));
    }
    matches = next;
  }
  return matches.filter(Boolean);
}
