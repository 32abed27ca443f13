import { alignUp, alignment, fixedSize, offsetSizeFor, parseType, typeString, type GVType } from "./type.ts";
import type { GVValue } from "./value.ts";

export class GVariantDecodeError extends Error {}

/** Deserialises GVariant bytes of `type` (little-endian) into JS values (see value.ts). */
export function decode(type: string | GVType, bytes: Uint8Array): GVValue {
  const parsed = typeof type === "string" ? parseType(type) : type;
  return read(parsed, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

function read(type: GVType, data: Buffer): GVValue {
  switch (type.kind) {
    case "basic": return readBasic(type.code, data);
    case "variant": {
      const separator = data.lastIndexOf(0);
      if (separator < 0) throw new GVariantDecodeError("variant without a type string");
      const childType = data.subarray(separator + 1).toString("utf8");
      return { type: childType, value: read(parseType(childType), data.subarray(0, separator)) };
    }
    case "maybe": {
      if (data.length === 0) return null;
      return read(type.element, fixedSize(type.element) === null ? data.subarray(0, -1) : data);
    }
    case "array": return readArray(type.element, data);
    case "tuple": return readTuple(type.members, data);
    case "dict-entry": return readTuple([type.key, type.value], data);
  }
}

function readArray(element: GVType, data: Buffer): GVValue {
  if (typeString(element) === "y") return new Uint8Array(data);
  const size = fixedSize(element);
  if (size !== null) {
    if (data.length % size !== 0) throw new GVariantDecodeError(`array of ${typeString(element)} has a partial element`);
    const items: GVValue[] = [];
    for (let at = 0; at < data.length; at += size) items.push(read(element, data.subarray(at, at + size)));
    return items;
  }
  if (data.length === 0) return [];
  const width = offsetSizeFor(data.length);
  const offsetsStart = readUint(data, data.length - width, width);
  if (offsetsStart > data.length || (data.length - offsetsStart) % width !== 0) {
    throw new GVariantDecodeError("array framing offsets out of range");
  }
  const items: GVValue[] = [];
  let start = 0;
  for (let at = offsetsStart; at < data.length; at += width) {
    const end = readUint(data, at, width);
    start = alignUp(start, alignment(element));
    if (end < start || end > offsetsStart) throw new GVariantDecodeError("array element out of range");
    items.push(read(element, data.subarray(start, end)));
    start = end;
  }
  return items;
}

function readTuple(members: GVType[], data: Buffer): GVValue {
  const width = offsetSizeFor(data.length);
  let framingEnd = data.length;
  let position = 0;
  return members.map((member, index) => {
    const start = alignUp(position, alignment(member));
    const size = fixedSize(member);
    let end: number;
    if (size !== null) end = start + size;
    else if (index === members.length - 1) end = framingEnd;
    else {
      framingEnd -= width;
      end = readUint(data, framingEnd, width);
    }
    if (end < start || end > data.length) throw new GVariantDecodeError("tuple member out of range");
    position = end;
    return read(member, data.subarray(start, end));
  });
}

function readUint(data: Buffer, at: number, width: number): number {
  let value = 0;
  for (let i = width - 1; i >= 0; i--) value = value * 256 + (data[at + i] ?? 0);
  return value;
}

function readBasic(code: string, data: Buffer): GVValue {
  if (code === "s" || code === "o" || code === "g") {
    if (data.length === 0 || data[data.length - 1] !== 0) throw new GVariantDecodeError("string without terminating NUL");
    return data.subarray(0, -1).toString("utf8");
  }
  switch (code) {
    case "b": return data[0] === 1;
    case "y": return data.readUInt8(0);
    case "n": return data.readInt16LE(0);
    case "q": return data.readUInt16LE(0);
    case "i": return data.readInt32LE(0);
    case "u":
    case "h": return data.readUInt32LE(0);
    case "x": return data.readBigInt64LE(0);
    case "t": return data.readBigUInt64LE(0);
    case "d": return data.readDoubleLE(0);
  }
  throw new GVariantDecodeError(`unsupported basic type '${code}'`);
}
