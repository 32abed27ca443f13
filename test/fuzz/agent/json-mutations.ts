/**
 * Structural mutations of JSON documents, for the agent's campaign: a value anywhere replaced by
 * another type, an edge number, a huge string or deep nesting; keys dropped, added, duplicated or
 * named `__proto__`; numbers out of range (1e999). Some of these have no JavaScript value
 * (duplicate keys, `__proto__` as an own key, 1e999), so a mutated document is a tree of plain
 * values and `Raw`/`Entries` nodes that `emitJson` writes out as text.
 */
import type { Prng } from "../prng.ts";

/** Text written as is (1e999, nesting too deep to build as values). */
export class Raw {
  constructor(readonly text: string) {}
}

/** An object written entry by entry: keys may repeat, and `__proto__` is an ordinary key. */
export class Entries {
  constructor(readonly entries: Array<[string, unknown]>) {}
}

export function emitJson(value: unknown): string {
  if (value instanceof Raw) return value.text;
  if (value instanceof Entries) return `{${value.entries.map(([k, v]) => `${JSON.stringify(k)}:${emitJson(v)}`).join(",")}}`;
  if (Array.isArray(value)) return `[${value.map(emitJson).join(",")}]`;
  if (value !== null && typeof value === "object") return emitJson(new Entries(Object.entries(value)));
  return JSON.stringify(value) ?? "null";
}

/** True when the tree holds only values JavaScript can hold (so it can be signed as is). */
export function isPlain(value: unknown): boolean {
  if (value instanceof Raw || value instanceof Entries) return false;
  if (Array.isArray(value)) return value.every(isPlain);
  if (value !== null && typeof value === "object") return Object.values(value).every(isPlain);
  return true;
}

type Path = Array<string | number>;

/** Every path in the tree, root first (the root is []). */
function paths(value: unknown, at: Path = [], out: Path[] = []): Path[] {
  out.push(at);
  if (Array.isArray(value)) value.forEach((item, i) => paths(item, [...at, i], out));
  else if (value !== null && typeof value === "object" && !(value instanceof Raw) && !(value instanceof Entries)) {
    for (const [key, item] of Object.entries(value)) paths(item, [...at, key], out);
  }
  return out;
}

function get(root: unknown, path: Path): unknown {
  return path.reduce<unknown>((node, key) => (node as Record<string | number, unknown>)[key], root);
}

/** A copy of `root` with the node at `path` replaced by `make(old)`. */
function replaceAt(root: unknown, path: Path, make: (old: unknown) => unknown): unknown {
  if (path.length === 0) return make(root);
  const [head, ...rest] = path;
  if (Array.isArray(root)) return root.map((item, i) => (i === head ? replaceAt(item, rest, make) : item));
  const copy: Record<string, unknown> = { ...(root as Record<string, unknown>) };
  copy[head as string] = replaceAt(copy[head as string], rest, make);
  return copy;
}

const EDGE_NUMBERS = [0, -0, -1, 1.5, 2 ** 31, 2 ** 53, 2 ** 53 + 2, -(2 ** 63), 1e308, 5e-324, 0.1];
const ODD_STRINGS = ["", " ", "\u0000", "\ud800", "../../../etc/passwd", "deltas/../../x", "A".repeat(64), "constructor", "__proto__", "é", "9999-99-99T99:99:99Z", "2020-01-01T00:00:00Z"];
const ODD_KEYS = ["constructor", "toString", "hasOwnProperty", "valueOf", "extra", "", "manifest", "signatures"];

function nested(prng: Prng, depth: number): unknown {
  return prng.chance(0.5) ? new Raw(`${"[".repeat(depth)}${"]".repeat(depth)}`) : new Raw(`${'{"a":'.repeat(depth)}0${"}".repeat(depth)}`);
}

function otherValue(prng: Prng): unknown {
  switch (prng.int(7)) {
    case 0:
      return prng.pick([null, true, false]);
    case 1:
      return prng.pick(EDGE_NUMBERS);
    case 2:
      return prng.pick(ODD_STRINGS);
    case 3:
      return [];
    case 4:
      return {};
    case 5:
      return "x".repeat(prng.pick([100, 70_000, 2_000_000]));
    default:
      return prng.int(1000);
  }
}

export type StructuralMutation = "other-value" | "out-of-range-number" | "deep-nesting" | "shallow-nesting" | "drop-key" | "extra-key" | "duplicate-key" | "proto-key" | "string-edit";
export const STRUCTURAL_MUTATIONS: readonly StructuralMutation[] = ["other-value", "out-of-range-number", "deep-nesting", "shallow-nesting", "drop-key", "extra-key", "duplicate-key", "proto-key", "string-edit"];
/** The mutations whose result stays a plain value (so it can be re-signed). */
export const PLAIN_MUTATIONS: readonly StructuralMutation[] = ["other-value", "shallow-nesting", "drop-key", "extra-key", "string-edit"];

/** One structural mutation somewhere in `root`. */
export function mutateStructure(prng: Prng, root: unknown, kind: StructuralMutation): unknown {
  const all = paths(root);
  const objects = all.filter((p) => { const n = get(root, p); return n !== null && typeof n === "object" && !Array.isArray(n); });
  const strings = all.filter((p) => typeof get(root, p) === "string");
  const anywhere = prng.pick(all);
  switch (kind) {
    case "other-value":
      return replaceAt(root, anywhere, () => otherValue(prng));
    case "out-of-range-number":
      return replaceAt(root, anywhere, () => new Raw(prng.pick(["1e999", "-1e999", "1e400", "123456789e999"])));
    case "deep-nesting":
      return replaceAt(root, anywhere, () => nested(prng, prng.pick([13, 64, 5000, 100_000])));
    case "shallow-nesting": {
      let value: unknown = prng.int(9);
      for (let depth = 1 + prng.int(12); depth > 0; depth--) value = prng.chance(0.5) ? [value] : { a: value };
      return replaceAt(root, anywhere, () => value);
    }
    case "drop-key":
    case "extra-key":
    case "duplicate-key":
    case "proto-key": {
      if (objects.length === 0) return replaceAt(root, anywhere, () => otherValue(prng));
      return replaceAt(root, prng.pick(objects), (old) => {
        const entries = Object.entries(old as Record<string, unknown>);
        if (kind === "drop-key") return entries.length === 0 ? { extra: 1 } : Object.fromEntries(entries.filter((_, i) => i !== prng.int(entries.length)));
        if (kind === "extra-key") return { ...(old as object), [prng.pick(ODD_KEYS)]: otherValue(prng) };
        if (kind === "proto-key") return new Entries([...entries, ["__proto__", prng.chance(0.5) ? { rollout: "evil", downgrade: true } : otherValue(prng)]]);
        // A key again, before or after the original: JSON.parse keeps the last.
        const [key] = entries.length > 0 ? prng.pick(entries) : ["k"];
        const twin: [string, unknown] = [key, otherValue(prng)];
        return new Entries(prng.chance(0.5) ? [twin, ...entries] : [...entries, twin]);
      });
    }
    case "string-edit": {
      if (strings.length === 0) return replaceAt(root, anywhere, () => otherValue(prng));
      return replaceAt(root, prng.pick(strings), (old) => {
        const text = old as string;
        const at = prng.int(text.length + 1);
        return text.slice(0, at) + prng.pick(["0", "f", "F", "/", ".", "\u0000", "é", "\ud83d", " "]) + text.slice(at + (prng.chance(0.5) ? 1 : 0));
      });
    }
  }
}
