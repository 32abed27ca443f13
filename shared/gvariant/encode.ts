import { alignUp, alignment, fixedSize, parseType, typeString, type GVType } from "./type.ts";
import { isVariant, type GVValue } from "./value.ts";

/** Serialises `value` as GVariant `type` in normal form, little-endian (GVariant spec §2.3). */
export function encode(type: string | GVType, value: GVValue): Uint8Array {
  const parsed = typeof type === "string" ? parseType(type) : type;
  const out = new Writer();
  write(out, parsed, value);
  return out.bytes();
}

class Writer {
  private chunks: Uint8Array[] = [];
  length = 0;

  push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  pad(align: number): void {
    const target = alignUp(this.length, align);
    if (target > this.length) this.push(new Uint8Array(target - this.length));
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.chunks);
  }
}

function write(out: Writer, type: GVType, value: GVValue): void {
  switch (type.kind) {
    case "basic": return out.push(encodeBasic(type.code, value));
    case "variant": {
      if (value === null || !isVariant(value)) throw new TypeError("variant value must be { type, value }");
      out.push(encode(value.type, value.value));
      out.push(new Uint8Array([0]));
      out.push(Buffer.from(value.type, "utf8"));
      return;
    }
    case "maybe": {
      if (value === null) return;
      write(out, type.element, value);
      if (fixedSize(type.element) === null) out.push(new Uint8Array([0]));
      return;
    }
    case "array": return writeArray(out, type.element, value);
    case "tuple": return writeTuple(out, type, type.members, value);
    case "dict-entry": return writeTuple(out, type, [type.key, type.value], value);
  }
}

function writeArray(out: Writer, element: GVType, value: GVValue): void {
  if (value instanceof Uint8Array) {
    if (typeString(element) !== "y") throw new TypeError("Uint8Array only encodes 'ay'");
    out.push(value);
    return;
  }
  if (!Array.isArray(value)) throw new TypeError(`array value expected for a${typeString(element)}`);
  if (fixedSize(element) !== null) {
    for (const item of value) write(out, element, item);
    return;
  }
  const body = new Writer();
  const ends: number[] = [];
  for (const item of value) {
    body.pad(alignment(element));
    write(body, element, item);
    ends.push(body.length);
  }
  out.push(withOffsets(body.bytes(), ends));
}

function writeTuple(out: Writer, self: GVType, members: GVType[], value: GVValue): void {
  if (!Array.isArray(value) || value.length !== members.length) {
    throw new TypeError(`tuple ${typeString(self)} needs ${members.length} members`);
  }
  const body = new Writer();
  const ends: number[] = [];
  members.forEach((member, index) => {
    body.pad(alignment(member));
    write(body, member, value[index] ?? null);
    if (fixedSize(member) === null && index < members.length - 1) ends.push(body.length);
  });
  const size = fixedSize(self);
  if (size !== null) {
    if (body.length === 0) body.push(new Uint8Array([0]));
    body.pad(alignment(self));
    out.push(body.bytes());
    return;
  }
  // Structures store their framing offsets in reverse order (spec §2.5.3).
  out.push(withOffsets(body.bytes(), ends.reverse()));
}

/** Appends framing offsets, choosing the smallest offset size that fits the result. */
function withOffsets(body: Uint8Array, offsets: number[]): Uint8Array {
  if (offsets.length === 0) return body;
  let width = 1;
  while (width < 8 && body.length + offsets.length * width > 2 ** (8 * width) - 1) width *= 2;
  const result = Buffer.alloc(body.length + offsets.length * width);
  result.set(body, 0);
  offsets.forEach((offset, index) => writeUint(result, body.length + index * width, width, BigInt(offset)));
  return result;
}

function writeUint(buffer: Buffer, at: number, width: number, value: bigint): void {
  for (let i = 0; i < width; i++) buffer[at + i] = Number((value >> BigInt(8 * i)) & 0xffn);
}

function encodeBasic(code: string, value: GVValue): Uint8Array {
  if (code === "s" || code === "o" || code === "g") {
    if (typeof value !== "string") throw new TypeError(`string expected for '${code}'`);
    return Buffer.concat([Buffer.from(value, "utf8"), Buffer.from([0])]);
  }
  if (code === "b") return new Uint8Array([value ? 1 : 0]);
  const size = { y: 1, n: 2, q: 2, i: 4, u: 4, h: 4, x: 8, t: 8, d: 8 }[code]!;
  const buffer = Buffer.alloc(size);
  if (code === "d") buffer.writeDoubleLE(Number(value), 0);
  else if (code === "x") buffer.writeBigInt64LE(BigInt(value as number | bigint), 0);
  else if (code === "t") buffer.writeBigUInt64LE(BigInt(value as number | bigint), 0);
  else if (code === "n" || code === "i") buffer.writeIntLE(Number(value), 0, size);
  else buffer.writeUIntLE(Number(value), 0, size);
  return buffer;
}
