/**
 * The rootfs from Debian's packages with mmdebstrap (foreign architectures through
 * qemu-user-static and binfmt). The .deb and index caches are bind-mounted into the chroot
 * inside a private mount namespace, so they persist between composes and no mount outlives
 * the process.
 */
import { createInterface } from "node:readline";
import { execa } from "execa";
import { AptOstreeError } from "../../shared/errors.ts";
import type { AptCachePaths } from "./cache.ts";
import type { ComposeProgress } from "./progress.ts";
import type { Recipe } from "./recipe.ts";
import { requestedPackages, sourcesLines } from "./sources.ts";

export class MmdebstrapError extends AptOstreeError {
  constructor(exitCode: number | undefined, tail: string[]) {
    super("E_MMDEBSTRAP", `mmdebstrap failed (exit code ${exitCode ?? "?"}):\n${tail.join("\n")}`);
  }
}

export interface RootfsOptions {
  recipe: Recipe;
  cache: AptCachePaths;
  /** Empty directory to build into. */
  target: string;
  /** How many packages the resolved set holds, for progress. */
  expectedPackages: number;
  progress: ComposeProgress;
  signal?: AbortSignal;
}

export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

export function mmdebstrapArgs(options: Pick<RootfsOptions, "recipe" | "cache" | "target">): string[] {
  const { recipe, cache } = options;
  return [
    "--mode=root",
    `--variant=${recipe.variant}`,
    `--architectures=${recipe.architecture}`,
    `--include=${requestedPackages(recipe).join(",")}`,
    '--aptopt=APT::Install-Recommends "false"',
    '--aptopt=Acquire::Languages "none"',
    "--verbose",
    // Indices were refreshed on the host (apt.ts) into the same cache; keep them and the debs.
    "--skip=update",
    "--skip=download/empty",
    // mmdebstrap deletes the essential .debs after installing them; they belong to the cache.
    "--skip=essential/unlink",
    "--skip=cleanup/apt/lists",
    `--setup-hook=mkdir -p "$1/var/cache/apt/archives" "$1/var/lib/apt/lists"`
      + ` && mount --bind ${shellQuote(cache.archives)} "$1/var/cache/apt/archives"`
      + ` && mount --bind ${shellQuote(cache.lists)} "$1/var/lib/apt/lists"`,
    `--customize-hook=umount "$1/var/cache/apt/archives" "$1/var/lib/apt/lists"`,
    recipe.suite,
    options.target,
    ...sourcesLines(recipe, { signedBy: false }),
  ];
}

/** Builds the rootfs; returns how many packages were downloaded (0 when the cache had them all). */
export async function buildRootfs(options: RootfsOptions): Promise<number> {
  const child = execa("unshare", ["--mount", "--propagation", "private", "mmdebstrap", ...mmdebstrapArgs(options)], {
    env: {
      SOURCE_DATE_EPOCH: String(options.recipe.sourceDateEpoch),
      // The kernel's postinst would build an initramfs we replace anyway (kernel.ts).
      INITRD: "No",
      LC_ALL: "C.UTF-8",
      DEBIAN_FRONTEND: "noninteractive",
    },
    all: true,
    buffer: false,
    reject: false,
    cancelSignal: options.signal,
  });
  const tail: string[] = [];
  let fetched = 0;
  const lines = createInterface({ input: child.all! });
  for await (const line of lines) {
    tail.push(line);
    if (tail.length > 15) tail.shift();
    if (line.startsWith("Get:")) options.progress.packages(++fetched, options.expectedPackages);
    else if (line.startsWith("I: ")) options.progress.phase("mmdebstrap", line.slice(3));
  }
  const result = await child;
  if (result.exitCode !== 0) throw new MmdebstrapError(result.exitCode, tail);
  return fetched;
}
