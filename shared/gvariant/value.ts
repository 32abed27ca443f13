/**
 * JS shapes of GVariant values: numbers for 8-32 bit integers and doubles, bigint for 64-bit
 * integers, Uint8Array for `ay`, arrays for other arrays and for tuples and dict entries,
 * null for an empty maybe, and `{ type, value }` for a variant.
 */
export type GVValue = boolean | number | bigint | string | Uint8Array | GVVariant | GVValue[] | null;

export interface GVVariant {
  type: string;
  value: GVValue;
}

export function variant(type: string, value: GVValue): GVVariant {
  return { type, value };
}

export function isVariant(value: GVValue): value is GVVariant {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/** An `a{sv}` value as a Map from key to variant. */
export function vardictToMap(value: GVValue): Map<string, GVVariant> {
  const map = new Map<string, GVVariant>();
  if (!Array.isArray(value)) throw new TypeError("a{sv} must decode to an array");
  for (const entry of value) {
    if (!Array.isArray(entry) || typeof entry[0] !== "string" || !isVariant(entry[1] ?? null)) {
      throw new TypeError("a{sv} entry must be [string, variant]");
    }
    map.set(entry[0], entry[1] as GVVariant);
  }
  return map;
}

/** Entries for an `a{sv}`, in the map's insertion order. */
export function mapToVardict(map: Map<string, GVVariant>): GVValue[] {
  return [...map.entries()].map(([key, value]) => [key, value]);
}
