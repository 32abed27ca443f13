import { describe, expect, it } from "vitest";
import { staticDeltaDir } from "../../../shared/ostree/static-delta.ts";
import { commitSizes } from "../../../shared/ostree/show.ts";
import { parseCommitObject } from "../../../shared/ostree/commit-object.ts";
import { variant } from "../../../shared/gvariant/index.ts";
import { VECTOR_COMMIT, vectorObject } from "../../helpers/fixtures.ts";

describe("static delta names", () => {
  it("matches the directory ostree 2022.7 wrote for a from-scratch delta", () => {
    // Observed: ostree static-delta generate --empty --to=c4824a... wrote deltas/xI/JK+VR6wc...
    expect(staticDeltaDir(null, "c4824af9547ac1c58885e217f2c3e7fb6fc5aacfc10f0e2792535fcc3c86607c")).toBe("deltas/xI/JK+VR6wcWIheIX8sPn+2_Fqs_BDw4nklNfzDyGYHw");
  });

  it("names a delta between two commits from-to, with '/' replaced by '_'", () => {
    const from = "ff".repeat(32);
    expect(staticDeltaDir(from, "00".repeat(32))).toBe(`deltas/__/${"_".repeat(40)}8-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`);
  });
});

describe("commit objects", () => {
  it("parses the upstream vector commit", () => {
    const commit = parseCommitObject(vectorObject(VECTOR_COMMIT, "commit"));
    expect(commit).toMatchObject({ parent: null, subject: "vector commit", rootTree: "f7854a54f2915688fac606cfa296a5743e6fa26cade29c4b1c3fa36d4666858a" });
    expect(commit.timestamp).toBeGreaterThan(1_600_000_000);
    expect(commit.metadata.get("version")).toEqual({ type: "s", value: "1" });
  });

  it("totals ostree.sizes entries (checksum, varint sizes, type)", () => {
    const entry = (archived: number[], unpacked: number[]) => new Uint8Array([...new Uint8Array(32), ...archived, ...unpacked, 1]);
    const commit = parseCommitObject(vectorObject(VECTOR_COMMIT, "commit"));
    commit.metadata.set("ostree.sizes", variant("aay", [entry([0x94, 0x82, 0x01], [0x05]), entry([0x35], [0x16])]));
    expect(commitSizes(commit)).toEqual({ compressed: 0x14 + (0x02 << 7) + (1 << 14) + 0x35, unpacked: 5 + 0x16, objects: 2 });
  });
});
