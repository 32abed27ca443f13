/** Pure parser of OSTree commit objects: `(a{sv}aya(say)sstayay)` (ostree-core.h OSTREE_COMMIT_GVARIANT_FORMAT). */
import { decode, vardictToMap, type GVValue, type GVVariant } from "../gvariant/index.ts";

export interface CommitObject {
  metadata: Map<string, GVVariant>;
  /** Parent commit checksum, null for a root commit. */
  parent: string | null;
  subject: string;
  body: string;
  /** Seconds since the epoch. */
  timestamp: number;
  rootTree: string;
  rootMeta: string;
}

export function parseCommitObject(bytes: Uint8Array): CommitObject {
  const [metadata, parent, , subject, body, timestamp, rootTree, rootMeta] = decode("(a{sv}aya(say)sstayay)", bytes) as GVValue[];
  return {
    metadata: vardictToMap(metadata ?? []),
    parent: hexOrNull(parent as Uint8Array),
    subject: subject as string,
    body: body as string,
    // OSTree stores the commit timestamp big-endian regardless of host order.
    timestamp: Number(swap64(timestamp as bigint)),
    rootTree: hexOrNull(rootTree as Uint8Array) ?? "",
    rootMeta: hexOrNull(rootMeta as Uint8Array) ?? "",
  };
}

export function metadataString(commit: CommitObject, key: string): string | undefined {
  const value = commit.metadata.get(key);
  return value?.type === "s" ? (value.value as string) : undefined;
}

function hexOrNull(bytes: Uint8Array): string | null {
  return bytes.length === 0 ? null : Buffer.from(bytes).toString("hex");
}

function swap64(value: bigint): bigint {
  const buffer = Buffer.alloc(8);
  buffer.writeBigUInt64LE(value);
  return buffer.readBigUInt64BE();
}
