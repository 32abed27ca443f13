/**
 * shared/ and device/ validate with zod/mini, the tree-shakable build of zod (import it as
 * `import * as z from "zod/mini"`: re-exporting the namespace would defeat the tree shaking).
 * Classic zod costs the idle device agent ~4 MiB of RSS (docs/BENCHMARKS.md); the server keeps
 * it for its own schemas and parses these with the same `.parse`. zod/mini has no messages
 * until a locale is set: this module sets English, and every place that shows an issue imports
 * `describeIssue` from here.
 */
import { config } from "zod/mini";
import { en } from "zod/locales";

config(en());

/** `path: message` for a validation issue; `root` names the whole document when the path is empty. */
export function describeIssue(issue: { path: PropertyKey[]; message: string; code?: string; keys?: string[] }, root = "(root)"): string {
  const where = issue.path.length > 0 ? issue.path.map(String).join(".") : root;
  return `${where}: ${issue.code === "unrecognized_keys" ? `unknown key ${issue.keys!.join(", ")}` : issue.message}`;
}

/** Every issue, `; `-separated. */
export function describeIssues(issues: ReadonlyArray<Parameters<typeof describeIssue>[0]>): string {
  return issues.map((issue) => describeIssue(issue)).join("; ");
}
