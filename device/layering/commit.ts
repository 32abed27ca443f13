/**
 * Commits an assembled layer: its parent is the signed base, it keeps the base's string metadata
 * (version, sequence, machine, kernel arguments...) so status and updates read it as they read
 * the base, its package list is the tree's, and the layer keys say what was asked and done.
 */
import { isVariant } from "../../shared/gvariant/index.ts";
import { META, packagesVariantText, type PackageEntry } from "../../shared/image/commit-metadata.ts";
import { encodeLayerMetadata, layerDigest, type LayerOutcome, type LayerRequest } from "../../shared/image/layer-metadata.ts";
import { parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { commitTree } from "../../shared/ostree/commit.ts";
import { readCommitObject } from "../../shared/ostree/repo.ts";

/** Keeps the newest layered commit from `ostree prune --refs-only` until a deployment holds it. */
export const LAYERED_REF = "apt-ostree/layered";

export interface LayerCommitOptions {
  repo: string;
  base: string;
  tree: string;
  request: LayerRequest;
  outcome: LayerOutcome;
  packages: PackageEntry[];
  now?: Date;
  signal?: AbortSignal;
}

export async function commitLayer(options: LayerCommitOptions): Promise<string> {
  const base = parseCommitObject(await readCommitObject(options.repo, options.base));
  const strings: Record<string, string> = {};
  for (const [key, value] of base.metadata) {
    if (isVariant(value) && value.type === "s" && !key.startsWith("ostree.ref-binding") && key !== "ostree.collection-binding") strings[key] = value.value as string;
  }
  const digest = layerDigest(options.base, options.request);
  const layered = options.outcome.layeredPackages;
  return commitTree({
    repo: options.repo,
    tree: options.tree,
    branch: LAYERED_REF,
    parent: options.base,
    subject: `${base.subject}${layered.length > 0 ? ` + ${layered.join(", ")}` : ""}`.slice(0, 500),
    timestamp: Math.floor((options.now ?? new Date()).getTime() / 1000),
    linkCheckoutSpeedup: true,
    metadataStrings: strings,
    metadataVariants: {
      ...encodeLayerMetadata({ base: options.base, request: options.request, outcome: options.outcome, digest }),
      [META.packages]: packagesVariantText(options.packages),
    },
    ...(options.signal ? { signal: options.signal } : {}),
  });
}
