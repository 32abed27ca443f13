/**
 * apt-ostree's keys in commit metadata, written by compose and read by publish, `db diff`
 * and the device. Plain strings except the package list, which is `a(sss)` like
 * rpm-ostree's `rpmostree.rpmdb.pkglist`.
 */
import { isVariant, type GVValue } from "../gvariant/index.ts";
import type { CommitObject } from "../ostree/commit-object.ts";
import { metadataString } from "../ostree/commit-object.ts";
import { AptOstreeError } from "../errors.ts";
import { gvariantTextString } from "../ostree/commit.ts";

export const META = {
  version: "version",
  sequence: "apt-ostree.sequence",
  architecture: "apt-ostree.architecture",
  machine: "apt-ostree.machine",
  image: "apt-ostree.image",
  recipeDigest: "apt-ostree.recipe-digest",
  sourceDateEpoch: "apt-ostree.source-date-epoch",
  packages: "apt-ostree.packages",
  /** The machine's kernel arguments, space-separated: what a disk built from the commit boots with. */
  kernelArgs: "apt-ostree.kernel-args",
  linux: "ostree.linux",
} as const;

export interface PackageEntry {
  name: string;
  version: string;
  architecture: string;
}

export interface ImageCommitInfo {
  version: string;
  sequence: number;
  architecture: string;
  machine: string;
  image: string;
  recipeDigest: string;
  packages: PackageEntry[];
  kernelArgs: string[];
}

export class NotAnImageCommitError extends AptOstreeError {
  constructor(what: string, key: string) {
    super("E_NOT_IMAGE_COMMIT", `${what} has no '${key}' metadata: it was not composed by apt-ostree`);
  }
}

export function readImageCommitInfo(commit: CommitObject, what: string): ImageCommitInfo {
  const need = (key: string): string => {
    const value = metadataString(commit, key);
    if (value === undefined) throw new NotAnImageCommitError(what, key);
    return value;
  };
  const packagesValue = commit.metadata.get(META.packages);
  if (!packagesValue || !isVariant(packagesValue) || packagesValue.type !== "a(sss)") throw new NotAnImageCommitError(what, META.packages);
  return {
    version: need(META.version),
    sequence: Number(need(META.sequence)),
    architecture: need(META.architecture),
    machine: need(META.machine),
    image: need(META.image),
    recipeDigest: need(META.recipeDigest),
    kernelArgs: (metadataString(commit, META.kernelArgs) ?? "").split(" ").filter(Boolean),
    packages: (packagesValue.value as GVValue[]).map((entry) => {
      const [name, version, architecture] = entry as [string, string, string];
      return { name, version, architecture };
    }),
  };
}

export interface ImageCommitFields extends ImageCommitInfo {
  sourceDateEpoch: number;
  kernel: string | null;
}

/** Metadata arguments for `ostree commit` (see commitTree): strings, and the package list as GVariant text. */
export function encodeImageCommitMetadata(fields: ImageCommitFields): { metadataStrings: Record<string, string>; metadataVariants: Record<string, string> } {
  return {
    metadataStrings: {
      [META.version]: fields.version,
      [META.sequence]: String(fields.sequence),
      [META.architecture]: fields.architecture,
      [META.machine]: fields.machine,
      [META.image]: fields.image,
      [META.recipeDigest]: fields.recipeDigest,
      [META.sourceDateEpoch]: String(fields.sourceDateEpoch),
      ...(fields.kernel ? { [META.linux]: fields.kernel } : {}),
      ...(fields.kernelArgs.length > 0 ? { [META.kernelArgs]: fields.kernelArgs.join(" ") } : {}),
    },
    metadataVariants: { [META.packages]: packagesVariantText(fields.packages) },
  };
}

export function packagesVariantText(packages: PackageEntry[]): string {
  if (packages.length === 0) return "@a(sss) []";
  return `[${packages.map((p) => `(${gvariantTextString(p.name)}, ${gvariantTextString(p.version)}, ${gvariantTextString(p.architecture)})`).join(", ")}]`;
}
