import { unlink } from "node:fs/promises";

/**
 * Removes one file (or socket, or symlink); a path that does not exist is not an error. Not
 * `rm(path, { force: true })`: that loads Node's recursive remover, memory an idle agent keeps.
 */
export async function removeFile(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}
