/**
 * The keys of a layered commit: a commit the device makes itself, on top of a signed base commit
 * (its parent), with packages installed, removed or replaced by the admin. Mirrors rpm-ostree's
 * `rpmostree.clientlayer` family: the request (what the admin asked for, carried to every new
 * base) and its outcome on this base (what was layered, removed and replaced).
 */
import { createHash } from "node:crypto";
import type { GVValue, GVVariant } from "../gvariant/index.ts";
import type { CommitObject } from "../ostree/commit-object.ts";
import { gvariantTextString } from "../ostree/commit.ts";
import { canonicalJson } from "../wire/canonical-json.ts";
import { AptOstreeError } from "../errors.ts";
import type { PackageEntry } from "./commit-metadata.ts";

export const LAYER_META = {
  clientLayer: "apt-ostree.clientlayer",
  clientLayerVersion: "apt-ostree.clientlayer-version",
  requestedPackages: "apt-ostree.requested-packages",
  requestedLocalPackages: "apt-ostree.requested-local-packages",
  requestedBaseRemovals: "apt-ostree.requested-base-removals",
  requestedBaseLocalReplacements: "apt-ostree.requested-base-local-replacements",
  layeredPackages: "apt-ostree.layered-packages",
  removedBasePackages: "apt-ostree.removed-base-packages",
  replacedBasePackages: "apt-ostree.replaced-base-packages",
  stateDigest: "apt-ostree.state-sha256",
} as const;

/** Bumped when the meaning of the keys changes; a device refuses a layer of a newer version. */
export const CLIENT_LAYER_VERSION = 1;

/** A .deb the admin gave by path: kept by its sha256 under the agent's state, so updates can apply it again. */
export interface LocalPackage extends PackageEntry {
  sha256: string;
}

/** What the admin asked for; carried unchanged onto every new base. */
export interface LayerRequest {
  /** `install NAME`: resolved by APT against the base and the device's sources. */
  packages: string[];
  /** `install ./pkg.deb` */
  localPackages: LocalPackage[];
  /** `override remove NAME`: base packages taken out. */
  baseRemovals: string[];
  /** `override replace ./pkg.deb`: base packages replaced by a local .deb. */
  baseLocalReplacements: LocalPackage[];
}

/** What the request came to on one base. */
export interface LayerOutcome {
  /** Requested names that the base does not already provide (rpm-ostree's `packages`); the others are inactive. */
  layeredPackages: string[];
  removedBasePackages: PackageEntry[];
  replacedBasePackages: Array<{ from: PackageEntry; to: PackageEntry }>;
}

export interface LayerInfo {
  /** The signed commit under the layer: the layered commit's parent. */
  base: string;
  request: LayerRequest;
  outcome: LayerOutcome;
  /** sha256 of the base and the request: equal digests build equal trees, so nothing needs doing. */
  digest: string;
}

export function emptyLayerRequest(): LayerRequest {
  return { packages: [], localPackages: [], baseRemovals: [], baseLocalReplacements: [] };
}

export function isEmptyLayerRequest(request: LayerRequest): boolean {
  return request.packages.length + request.localPackages.length + request.baseRemovals.length + request.baseLocalReplacements.length === 0;
}

export function layerDigest(base: string, request: LayerRequest): string {
  return createHash("sha256").update(canonicalJson({ base, request, version: CLIENT_LAYER_VERSION })).digest("hex");
}

/** The layer of a commit, or null for a commit that is not a client layer (a signed release). */
export function readLayerInfo(commit: CommitObject): LayerInfo | null {
  if (commit.metadata.get(LAYER_META.clientLayer)?.value !== true) return null;
  if (!commit.parent) throw new LayerMetadataError("a client layer without a parent commit");
  const version = commit.metadata.get(LAYER_META.clientLayerVersion);
  if (version?.type !== "u" || version.value !== CLIENT_LAYER_VERSION) {
    throw new LayerMetadataError(`client layer version ${String(version?.value)} is not ${CLIENT_LAYER_VERSION}: this agent is older than the one that made it`);
  }
  const strings = (key: string): string[] => listOf(commit.metadata.get(key), "as", key).map((v) => v as string);
  const packages = (key: string, type = "a(sss)"): PackageEntry[] => listOf(commit.metadata.get(key), type, key).map((v) => packageEntry(v));
  const locals = (key: string): LocalPackage[] =>
    listOf(commit.metadata.get(key), "a(ssss)", key).map((v) => {
      const [name, version, architecture, sha256] = v as string[];
      return { name: name!, version: version!, architecture: architecture!, sha256: sha256! };
    });
  const digest = commit.metadata.get(LAYER_META.stateDigest);
  return {
    base: commit.parent,
    request: {
      packages: strings(LAYER_META.requestedPackages),
      localPackages: locals(LAYER_META.requestedLocalPackages),
      baseRemovals: strings(LAYER_META.requestedBaseRemovals),
      baseLocalReplacements: locals(LAYER_META.requestedBaseLocalReplacements),
    },
    outcome: {
      layeredPackages: strings(LAYER_META.layeredPackages),
      removedBasePackages: packages(LAYER_META.removedBasePackages),
      replacedBasePackages: listOf(commit.metadata.get(LAYER_META.replacedBasePackages), "a((sss)(sss))", LAYER_META.replacedBasePackages).map((v) => {
        const [from, to] = v as GVValue[];
        return { from: packageEntry(from!), to: packageEntry(to!) };
      }),
    },
    digest: digest?.type === "s" ? (digest.value as string) : "",
  };
}

/** A layer's outcome by package name: what the device reports and status lists. */
export function layeredNames(outcome: LayerOutcome): { packages: string[]; removed: string[]; replaced: string[] } {
  return { packages: outcome.layeredPackages, removed: outcome.removedBasePackages.map((p) => p.name), replaced: outcome.replacedBasePackages.map((r) => r.from.name) };
}

/** The signed commit a deployment's commit stands on: its parent for a client layer, itself otherwise. */
export function baseOf(checksum: string, commit: CommitObject): string {
  return readLayerInfo(commit)?.base ?? checksum;
}

/** `ostree commit --add-metadata` values (GVariant text) for a layer. */
export function encodeLayerMetadata(info: LayerInfo): Record<string, string> {
  const { request, outcome } = info;
  return {
    [LAYER_META.clientLayer]: "true",
    [LAYER_META.clientLayerVersion]: `uint32 ${CLIENT_LAYER_VERSION}`,
    [LAYER_META.requestedPackages]: stringsText(request.packages),
    [LAYER_META.requestedLocalPackages]: localsText(request.localPackages),
    [LAYER_META.requestedBaseRemovals]: stringsText(request.baseRemovals),
    [LAYER_META.requestedBaseLocalReplacements]: localsText(request.baseLocalReplacements),
    [LAYER_META.layeredPackages]: stringsText(outcome.layeredPackages),
    [LAYER_META.removedBasePackages]: outcome.removedBasePackages.length === 0 ? "@a(sss) []" : `[${outcome.removedBasePackages.map(entryText).join(", ")}]`,
    [LAYER_META.replacedBasePackages]: outcome.replacedBasePackages.length === 0 ? "@a((sss)(sss)) []" : `[${outcome.replacedBasePackages.map((r) => `(${entryText(r.from)}, ${entryText(r.to)})`).join(", ")}]`,
    [LAYER_META.stateDigest]: gvariantTextString(info.digest),
  };
}

export class LayerMetadataError extends AptOstreeError {
  constructor(message: string) {
    super("E_LAYER_METADATA", `the layered commit's metadata is not usable: ${message}`);
  }
}

function listOf(value: GVVariant | undefined, type: string, key: string): GVValue[] {
  if (value === undefined) return [];
  if (value.type !== type || !Array.isArray(value.value)) throw new LayerMetadataError(`'${key}' is ${value.type}, not ${type}`);
  return value.value;
}

function packageEntry(value: GVValue): PackageEntry {
  const [name, version, architecture] = value as string[];
  return { name: name!, version: version!, architecture: architecture! };
}

function stringsText(values: string[]): string {
  return values.length === 0 ? "@as []" : `[${values.map(gvariantTextString).join(", ")}]`;
}

function entryText(entry: PackageEntry): string {
  return `(${gvariantTextString(entry.name)}, ${gvariantTextString(entry.version)}, ${gvariantTextString(entry.architecture)})`;
}

function localsText(values: LocalPackage[]): string {
  if (values.length === 0) return "@a(ssss) []";
  return `[${values.map((p) => `(${gvariantTextString(p.name)}, ${gvariantTextString(p.version)}, ${gvariantTextString(p.architecture)}, ${gvariantTextString(p.sha256)})`).join(", ")}]`;
}
