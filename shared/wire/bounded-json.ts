/**
 * JSON from the network, parsed with bounds before any other work: a size in bytes, a nesting
 * depth and a node count, and only finite numbers. `JSON.parse` alone accepts `1e999` (Infinity,
 * which canonical JSON cannot encode) and any depth (which recursive code such as
 * `canonicalJson` then overflows): both once let a 40-byte MQTT report end the server.
 */
import { AptOstreeError } from "../errors.ts";

export interface JsonLimits {
  /** Longest accepted document, in bytes of UTF-8. */
  maxBytes: number;
  /** Deepest accepted nesting of arrays and objects (a flat object is depth 1). */
  maxDepth: number;
  /** Most values (objects, arrays, strings, numbers, literals) in the document. */
  maxNodes: number;
}

export type JsonRefusal = "too-large" | "too-deep" | "too-many-values" | "not-json" | "non-finite-number";

export class JsonRefusedError extends AptOstreeError {
  readonly reason: JsonRefusal;
  constructor(reason: JsonRefusal, message: string) {
    super("E_JSON_REFUSED", message);
    this.reason = reason;
  }
}

/** Parses `input` or throws JsonRefusedError saying which bound it broke; never anything else. */
export function parseBoundedJson(input: string | Uint8Array, limits: JsonLimits): unknown {
  const size = typeof input === "string" ? Buffer.byteLength(input, "utf8") : input.byteLength;
  if (size > limits.maxBytes) throw new JsonRefusedError("too-large", `document is ${size} bytes; the limit is ${limits.maxBytes}`);
  const text = typeof input === "string" ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString("utf8");
  const depth = nestingDepth(text);
  if (depth > limits.maxDepth) throw new JsonRefusedError("too-deep", `document nests deeper than ${limits.maxDepth} levels`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new JsonRefusedError("not-json", `not JSON: ${(error as Error).message.slice(0, 200)}`);
  }
  // The scan bounded the depth before JSON.parse; this counts the values and refuses non-finite numbers.
  checkJsonValue(value, limits);
  return value;
}

/** Deepest bracket nesting outside strings; a linear scan, so a deep document costs no recursion. */
function nestingDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > deepest) deepest = depth;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}

/**
 * The same bounds on a document that arrives already parsed (a channel manifest fetched and
 * parsed with JSON.parse, a manifest kept in the state file): nesting depth, value count and
 * finite numbers, checked without recursion before anything recursive (canonical JSON) sees it.
 */
export function checkJsonValue(root: unknown, limits: Pick<JsonLimits, "maxDepth" | "maxNodes">): void {
  const pending: Array<{ value: unknown; depth: number }> = [{ value: root, depth: 0 }];
  let nodes = 0;
  while (pending.length > 0) {
    const { value, depth } = pending.pop()!;
    if (++nodes > limits.maxNodes) throw new JsonRefusedError("too-many-values", `document holds more than ${limits.maxNodes} values`);
    if (typeof value === "number" && !Number.isFinite(value)) throw new JsonRefusedError("non-finite-number", "document holds a number out of range (such as 1e999)");
    if (value === null || typeof value !== "object") continue;
    if (depth >= limits.maxDepth) throw new JsonRefusedError("too-deep", `document nests deeper than ${limits.maxDepth} levels`);
    for (const item of Array.isArray(value) ? value : Object.values(value)) pending.push({ value: item, depth: depth + 1 });
  }
}
