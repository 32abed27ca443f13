import { randomBytes } from "node:crypto";
import { open, readdir, rename } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { removeFile } from "./remove-file.ts";

const TEMPORARY_MARK = ".tmp-";

/**
 * The name of the file a temporary in the same directory was for (a writer killed between write
 * and rename leaves it), or null when `name` is not one of writeFileAtomic's temporaries.
 */
export function atomicWriteTarget(name: string): string | null {
  const mark = name.lastIndexOf(TEMPORARY_MARK);
  return name.startsWith(".") && mark > 1 ? name.slice(1, mark) : null;
}

/**
 * Removes from `dir` the temporaries that writers killed between write and rename left, those
 * whose target `wanted` accepts (default: all), and returns their names. Only while no writer of
 * those files runs: the caller holds their lock, or a writer of its own kind owns them.
 */
export async function removeAtomicWriteLeftovers(dir: string, wanted: (target: string) => boolean = () => true): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir)) {
    const target = atomicWriteTarget(name);
    if (target === null || !wanted(target)) continue;
    await removeFile(join(dir, name));
    removed.push(name);
  }
  return removed;
}

/**
 * Replaces `path` with `data` so a reader (or a crash) sees the old file or the new one, never
 * a mix: write a temporary file beside it, fsync, rename over, fsync the directory.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}${TEMPORARY_MARK}${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    const handle = await open(temporary, "w", mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await removeFile(temporary);
    throw error;
  }
  await fsyncPath(dirname(path));
}

/** fsync a file, or a directory so the renames inside it are durable. */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
