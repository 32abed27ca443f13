import { runOstree } from "./exec.ts";

export interface StaticDeltaOptions {
  repo: string;
  /** Source commit; null for a from-scratch delta. */
  from: string | null;
  to: string;
  /** Superblock path; ostree writes the parts (`0`, `1`...) beside it. */
  filename: string;
  /** Objects above this size (MiB) skip bsdiff: compressed initramfs gains nothing from it (DESIGN.md 5.2). */
  maxBsdiffSizeMiB?: number;
  signal?: AbortSignal;
}

/**
 * `ostree static-delta generate` with `--min-fallback-size=0`, so the delta carries every
 * object and `ostree static-delta apply-offline` can use it with no HTTP fallback.
 */
export async function generateStaticDelta(options: StaticDeltaOptions): Promise<void> {
  const argv = [
    "static-delta",
    "generate",
    `--repo=${options.repo}`,
    `--to=${options.to}`,
    "--min-fallback-size=0",
    `--max-bsdiff-size=${options.maxBsdiffSizeMiB ?? 16}`,
    `--filename=${options.filename}`,
  ];
  argv.push(options.from === null ? "--empty" : `--from=${options.from}`);
  await runOstree(argv, { signal: options.signal });
}

/**
 * OSTree's name for a delta: modified base64 of the checksums ('/' becomes '_', no padding),
 * `from-to`, or just `to` from scratch; stored under `deltas/<first 2>/<rest>/`.
 */
export function staticDeltaDir(from: string | null, to: string): string {
  const name = from === null ? mbase64(to) : `${mbase64(from)}-${mbase64(to)}`;
  return `deltas/${name.slice(0, 2)}/${name.slice(2)}`;
}

function mbase64(checksum: string): string {
  return Buffer.from(checksum, "hex").toString("base64").replace(/=+$/, "").replace(/\//g, "_");
}
