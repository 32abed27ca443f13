import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decode, encode, variant } from "../../../shared/gvariant/index.ts";
import { VECTORS } from "../../helpers/fixtures.ts";

const OBJECT_TYPES: Record<string, string> = {
  commit: "(a{sv}aya(say)sstayay)",
  commitmeta: "a{sv}",
  dirtree: "(a(say)a(sayay))",
  dirmeta: "(uuua(ayay))",
};

function repoObjects(): Array<[string, string, Buffer]> {
  const root = join(VECTORS, "repo/objects");
  return readdirSync(root).flatMap((dir) =>
    readdirSync(join(root, dir))
      .filter((name) => OBJECT_TYPES[name.split(".")[1]!])
      .map((name): [string, string, Buffer] => [name, OBJECT_TYPES[name.split(".")[1]!]!, readFileSync(join(root, dir, name))]),
  );
}

describe("GVariant codec", () => {
  it.each(repoObjects())("re-encodes OSTree object %s byte for byte", (_name, type, bytes) => {
    expect(Buffer.from(encode(type, decode(type, bytes)))).toEqual(bytes);
  });

  it.each([
    ["summary", "(a(s(taya{sv}))a{sv})"],
    ["summary.sig", "a{sv}"],
  ])("re-encodes the repo's %s byte for byte", (file, type) => {
    const bytes = readFileSync(join(VECTORS, "repo", file));
    expect(Buffer.from(encode(type, decode(type, bytes)))).toEqual(bytes);
  });

  it.each([
    ["s", "hello", "68656c6c6f00"],
    ["(si)", ["foo", -1], "666f6f00" + "ffffffff" + "04"],
    ["(us)", [1, "a"], "01000000" + "6100"],
    ["as", ["ab", "c"], "616200" + "6300" + "0305"],
    ["a(sy)", [["x", 5]], "7800" + "05" + "02" + "04"],
    ["ay", new Uint8Array([1, 2, 3]), "010203"],
    ["v", variant("u", 7), "07000000" + "00" + "75"],
    ["mu", null, ""],
    ["ms", "a", "6100" + "00"],
    ["()", [], "00"],
    ["(yu)", [1, 2], "01000000" + "02000000"],
  ])("encodes %s as the GVariant spec's examples do", (type, value, hex) => {
    const bytes = encode(type as string, value as never);
    expect(Buffer.from(bytes).toString("hex")).toBe(hex);
    expect(encode(type as string, decode(type as string, bytes))).toEqual(bytes);
  });

  it("switches to 2-byte framing offsets when a container passes 255 bytes", () => {
    const long = ["x".repeat(200), "y".repeat(100)];
    const bytes = encode("as", long);
    expect(bytes.length).toBe(201 + 101 + 2 * 2);
    expect(decode("as", bytes)).toEqual(long);
  });

  it("round-trips 64-bit and signed integers", () => {
    const value = [-5, 2n ** 63n + 1n, -(2n ** 40n), 1.5];
    expect(decode("(itxd)", encode("(itxd)", value))).toEqual(value);
  });

  it("rejects a string without its terminating NUL", () => {
    expect(() => decode("s", Buffer.from("abc"))).toThrow(/terminating NUL/);
  });

  it("rejects framing offsets that point outside the container", () => {
    expect(() => decode("as", Buffer.from([0x61, 0x00, 0x09]))).toThrow(/out of range/);
  });
});
