/**
 * GVariant type strings (https://docs.gtk.org/glib/gvariant-format-strings.html) parsed into a
 * tree, with the alignment and fixed size the serialisation format needs (GVariant spec §2.3).
 */
export type BasicCode = "b" | "y" | "n" | "q" | "i" | "u" | "x" | "t" | "h" | "d" | "s" | "o" | "g";

export type GVType =
  | { kind: "basic"; code: BasicCode }
  | { kind: "variant" }
  | { kind: "array"; element: GVType }
  | { kind: "maybe"; element: GVType }
  | { kind: "tuple"; members: GVType[] }
  | { kind: "dict-entry"; key: GVType; value: GVType };

const BASIC_SIZES: Record<BasicCode, number | null> = {
  b: 1, y: 1, n: 2, q: 2, i: 4, u: 4, h: 4, x: 8, t: 8, d: 8, s: null, o: null, g: null,
};

export class GVariantTypeError extends Error {}

export function parseType(text: string): GVType {
  const [type, rest] = parseOne(text, 0);
  if (rest !== text.length) throw new GVariantTypeError(`trailing characters in GVariant type '${text}'`);
  return type;
}

function parseOne(text: string, at: number): [GVType, number] {
  const c = text[at];
  if (c === undefined) throw new GVariantTypeError(`GVariant type '${text}' ends early`);
  if (c in BASIC_SIZES) return [{ kind: "basic", code: c as BasicCode }, at + 1];
  if (c === "v") return [{ kind: "variant" }, at + 1];
  if (c === "a" || c === "m") {
    const [element, next] = parseOne(text, at + 1);
    return [c === "a" ? { kind: "array", element } : { kind: "maybe", element }, next];
  }
  if (c === "(") {
    const members: GVType[] = [];
    let next = at + 1;
    while (text[next] !== ")") {
      const [member, after] = parseOne(text, next);
      members.push(member);
      next = after;
    }
    return [{ kind: "tuple", members }, next + 1];
  }
  if (c === "{") {
    const [key, afterKey] = parseOne(text, at + 1);
    const [value, afterValue] = parseOne(text, afterKey);
    if (text[afterValue] !== "}") throw new GVariantTypeError(`dict entry in '${text}' must have exactly two members`);
    return [{ kind: "dict-entry", key, value }, afterValue + 1];
  }
  throw new GVariantTypeError(`unsupported character '${c}' in GVariant type '${text}'`);
}

export function typeString(type: GVType): string {
  switch (type.kind) {
    case "basic": return type.code;
    case "variant": return "v";
    case "array": return `a${typeString(type.element)}`;
    case "maybe": return `m${typeString(type.element)}`;
    case "tuple": return `(${type.members.map(typeString).join("")})`;
    case "dict-entry": return `{${typeString(type.key)}${typeString(type.value)}}`;
  }
}

export function alignment(type: GVType): number {
  switch (type.kind) {
    case "basic": return BASIC_SIZES[type.code] ?? 1;
    case "variant": return 8;
    case "array":
    case "maybe": return alignment(type.element);
    case "tuple": return Math.max(1, ...type.members.map(alignment));
    case "dict-entry": return Math.max(alignment(type.key), alignment(type.value));
  }
}

/** Size in bytes when every value of the type has the same size, otherwise null. */
export function fixedSize(type: GVType): number | null {
  switch (type.kind) {
    case "basic": return BASIC_SIZES[type.code];
    case "variant":
    case "array":
    case "maybe": return null;
    case "tuple":
    case "dict-entry": {
      const members = type.kind === "tuple" ? type.members : [type.key, type.value];
      let offset = 0;
      for (const member of members) {
        const size = fixedSize(member);
        if (size === null) return null;
        offset = alignUp(offset, alignment(member)) + size;
      }
      if (offset === 0) return 1; // the unit tuple "()" is one zero byte
      return alignUp(offset, alignment(type));
    }
  }
}

export function alignUp(offset: number, align: number): number {
  return Math.ceil(offset / align) * align;
}

/** Bytes per framing offset in a container of `size` bytes (GVariant spec §2.3.6). */
export function offsetSizeFor(size: number): number {
  if (size === 0) return 0;
  if (size <= 0xff) return 1;
  if (size <= 0xffff) return 2;
  if (size <= 0xffffffff) return 4;
  return 8;
}
