import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

/** Interop vectors made by upstream OSTree with ed25519 (copied from ../shared/vectors). */
export const VECTORS = fileURLToPath(new URL("../fixtures/ostree-ed25519/", import.meta.url));
export const VECTOR_COMMIT = readFileSync(join(VECTORS, "commit.txt"), "utf8").trim();

export function vectorObject(checksum: string, extension: string): Buffer {
  return readFileSync(join(VECTORS, "repo/objects", checksum.slice(0, 2), `${checksum.slice(2)}.${extension}`));
}

export function vectorFile(relative: string): Buffer {
  return readFileSync(join(VECTORS, relative));
}
