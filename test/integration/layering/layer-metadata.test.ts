/** The layer keys through the real `ostree commit` and back through our commit parser. */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseCommitObject } from "../../../shared/ostree/commit-object.ts";
import { commitTree } from "../../../shared/ostree/commit.ts";
import { initRepo, readCommitObject } from "../../../shared/ostree/repo.ts";
import { baseOf, emptyLayerRequest, encodeLayerMetadata, layerDigest, readLayerInfo, LayerMetadataError, type LayerInfo } from "../../../shared/image/layer-metadata.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let repo: string;
let tree: string;

beforeEach(async () => {
  dir = await makeTempDir("layer-metadata");
  repo = join(dir, "repo");
  tree = join(dir, "tree");
  await initRepo(repo, "bare-user");
  await mkdir(join(tree, "usr"), { recursive: true });
  await writeFile(join(tree, "usr/a"), "a");
});
afterEach(() => removeTree(dir));

async function commitWith(variants: Record<string, string>, parent?: string): Promise<{ checksum: string; commit: ReturnType<typeof parseCommitObject> }> {
  const checksum = await commitTree({ repo, tree, branch: "test", subject: "t", timestamp: 1, metadataVariants: variants, ...(parent ? { parent } : {}) });
  return { checksum, commit: parseCommitObject(await readCommitObject(repo, checksum)) };
}

describe("layer metadata", () => {
  it("round-trips a request and its outcome, quotes and all, and names the parent as the base", async () => {
    const base = await commitWith({});
    const request = {
      packages: ["curl", "it's-odd\\name"],
      localPackages: [{ name: "tool", version: "1.0-1", architecture: "amd64", sha256: "a".repeat(64) }],
      baseRemovals: ["nano"],
      baseLocalReplacements: [{ name: "bash", version: "5.2-9", architecture: "amd64", sha256: "b".repeat(64) }],
    };
    const info: LayerInfo = {
      base: base.checksum,
      request,
      outcome: {
        layeredPackages: ["curl"],
        removedBasePackages: [{ name: "nano", version: "7.2-1", architecture: "amd64" }],
        replacedBasePackages: [{ from: { name: "bash", version: "5.2-1", architecture: "amd64" }, to: { name: "bash", version: "5.2-9", architecture: "amd64" } }],
      },
      digest: layerDigest(base.checksum, request),
    };
    const layered = await commitWith(encodeLayerMetadata(info), base.checksum);
    expect(readLayerInfo(layered.commit)).toEqual(info);
    expect(baseOf(layered.checksum, layered.commit)).toBe(base.checksum);
    expect(readLayerInfo(base.commit)).toBeNull();
    expect(baseOf(base.checksum, base.commit)).toBe(base.checksum);
  });

  it("encodes empty lists with their types, and refuses a layer of another version", async () => {
    const base = await commitWith({});
    const request = emptyLayerRequest();
    const info: LayerInfo = { base: base.checksum, request, outcome: { layeredPackages: [], removedBasePackages: [], replacedBasePackages: [] }, digest: layerDigest(base.checksum, request) };
    expect(readLayerInfo((await commitWith(encodeLayerMetadata(info), base.checksum)).commit)).toEqual(info);
    const newer = await commitWith({ ...encodeLayerMetadata(info), "apt-ostree.clientlayer-version": "uint32 9" }, base.checksum);
    expect(() => readLayerInfo(newer.commit)).toThrow(LayerMetadataError);
    expect(() => readLayerInfo(newer.commit)).toThrow(/version 9 is not 1/);
  });

  it("digests the base and the request, so a change to either means a new tree", () => {
    const request = { ...emptyLayerRequest(), packages: ["curl"] };
    expect(layerDigest("a".repeat(64), request)).toBe(layerDigest("a".repeat(64), { ...emptyLayerRequest(), packages: ["curl"] }));
    expect(layerDigest("a".repeat(64), request)).not.toBe(layerDigest("b".repeat(64), request));
    expect(layerDigest("a".repeat(64), request)).not.toBe(layerDigest("a".repeat(64), { ...request, packages: ["curl", "jq"] }));
  });
});
