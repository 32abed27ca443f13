import { runOstree } from "./exec.ts";

export interface CommitOptions {
  repo: string;
  /** Directory to commit. */
  tree: string;
  /** Commit the tree on top of this revision's tree (`--tree=ref=`): files in `tree` add or replace. */
  baseRevision?: string;
  /** Ref to update; ostree records it in `ostree.ref-binding`. */
  branch: string;
  subject: string;
  /** Seconds since the epoch: the commit timestamp is part of the checksum. */
  timestamp: number;
  /** String metadata (`--add-metadata-string`). */
  metadataStrings?: Record<string, string>;
  /** Metadata in GVariant text format (`--add-metadata`). */
  metadataVariants?: Record<string, string>;
  /** Explicit parent; defaults to the branch's current commit. */
  parent?: string | "none";
  /** Reuse the checksums of files hardlinked from the repo's objects (`--link-checkout-speedup`): a checkout commits in seconds. */
  linkCheckoutSpeedup?: boolean;
  signal?: AbortSignal;
}

/** `ostree commit`: returns the new commit's checksum. */
export async function commitTree(options: CommitOptions): Promise<string> {
  const argv = [
    "commit",
    `--repo=${options.repo}`,
    `--branch=${options.branch}`,
    ...(options.baseRevision ? [`--tree=ref=${options.baseRevision}`] : []),
    `--tree=dir=${options.tree}`,
    `--subject=${options.subject}`,
    `--timestamp=@${options.timestamp}`,
    "--generate-sizes",
  ];
  if (options.parent !== undefined) argv.push(`--parent=${options.parent}`);
  if (options.linkCheckoutSpeedup) argv.push("--link-checkout-speedup");
  for (const [key, value] of sortedEntries(options.metadataStrings)) argv.push(`--add-metadata-string=${key}=${value}`);
  for (const [key, value] of sortedEntries(options.metadataVariants)) argv.push(`--add-metadata=${key}=${value}`);
  return (await runOstree(argv, { signal: options.signal })).trim();
}

function sortedEntries(record: Record<string, string> | undefined): Array<[string, string]> {
  return Object.entries(record ?? {}).sort(([a], [b]) => a.localeCompare(b));
}

/** Quotes a string for GVariant text format (g_variant_parse). */
export function gvariantTextString(value: string): string {
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}
