/**
 * Downloads one file of a static delta with undici: resumes a partial file with a Range request,
 * aborts a transfer that makes no progress for `stallMs` (the zero-progress watchdog), and checks
 * size and sha256 against the signed manifest before the file is used. Debian's ostree never
 * sends Range and restarts interrupted files from zero (DESIGN.md 5.2); this does not.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rename, stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { Dispatcher } from "undici";
import { AptOstreeError } from "../../shared/errors.ts";
import { removeFile } from "../../shared/fs/remove-file.ts";
import { checkDeltaFileDigest, checkDeltaFileSize, DeltaFileMismatchError, hashFileInto, sha256OfFile, verifyDeltaFile } from "../../shared/verify/delta-file.ts";
import type { DeltaFile } from "../../shared/wire/manifest.ts";
import { loadHttpClient } from "./load-http-client.ts";

export class DownloadError extends AptOstreeError {
  /** Worth another attempt (network trouble, a stall) rather than a refusal. */
  readonly retryable: boolean;
  constructor(code: "E_DOWNLOAD_STALLED" | "E_DOWNLOAD_HTTP" | "E_DOWNLOAD_NETWORK", message: string, retryable: boolean, cause?: unknown) {
    super(code, message, { cause });
    this.retryable = retryable;
  }
}

export interface DownloadOptions {
  /** Abort when no byte arrived for this long. */
  stallMs: number;
  /** Called with the bytes of this file on disk so far. */
  onBytes?: (bytesOnDisk: number) => void;
  dispatcher?: Dispatcher;
  signal?: AbortSignal;
}

/**
 * Fetches `url` into `dest` (complete files are checked and kept: a second call costs a hash).
 * Partial content lives in `dest.part` until it verifies; the sha256 is computed as the bytes
 * arrive, so a verified file is read from disk only when a download resumes.
 */
export async function downloadVerified(url: string, dest: string, expected: DeltaFile, options: DownloadOptions): Promise<void> {
  if ((await stat(dest).catch(() => null))?.size === expected.size) {
    try {
      return await verifyDeltaFile(dest, expected);
    } catch {
      await removeFile(dest);
    }
  }
  await mkdir(dirname(dest), { recursive: true });
  const part = `${dest}.part`;
  let have = (await stat(part).catch(() => null))?.size ?? 0;
  if (have > expected.size) {
    await removeFile(part);
    have = 0;
  }
  try {
    const got = have < expected.size ? await fetchInto(url, part, have, options) : { size: have, sha256: await sha256OfFile(part) };
    checkDeltaFileSize(expected, got.size);
    checkDeltaFileDigest(expected, got.sha256);
  } catch (error) {
    // A mismatch means the part is bad; anything else (a stall, the network) leaves it to resume.
    if (error instanceof DeltaFileMismatchError) await removeFile(part);
    throw error;
  }
  await rename(part, dest);
}

/** Appends the rest of the file to `part` (or rewrites it when the server ignores the Range); returns its size and sha256. */
async function fetchInto(url: string, part: string, have: number, options: DownloadOptions): Promise<{ size: number; sha256: string }> {
  // One controller for both causes (AbortSignal.any needs Node 20; the device runs Node 18).
  const abort = new AbortController();
  let stalled = false;
  const onStall = () => {
    stalled = true;
    abort.abort();
  };
  const onCancel = () => abort.abort();
  options.signal?.addEventListener("abort", onCancel, { once: true });
  const signal = abort.signal;
  let watchdog = setTimeout(onStall, options.stallMs);
  const kick = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(onStall, options.stallMs);
  };
  try {
    const { request } = await loadHttpClient();
    const response = await request(url, { method: "GET", headers: have > 0 ? { range: `bytes=${have}-` } : {}, signal, dispatcher: options.dispatcher });
    if (response.statusCode !== 200 && response.statusCode !== 206) {
      await response.body.dump();
      throw new DownloadError("E_DOWNLOAD_HTTP", `GET ${url}: HTTP ${response.statusCode}`, response.statusCode >= 500 || response.statusCode === 429 || response.statusCode === 416);
    }
    // 200 to a Range request: the server sent the whole file; start over.
    const resumed = response.statusCode === 206;
    let written = resumed ? have : 0;
    const hash = resumed ? await hashFileInto(createHash("sha256"), part) : createHash("sha256");
    const out = createWriteStream(part, { flags: resumed ? "a" : "w" });
    try {
      for await (const chunk of response.body) {
        kick();
        hash.update(chunk as Buffer);
        if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
        written += (chunk as Buffer).length;
        options.onBytes?.(written);
      }
    } finally {
      await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
    }
    return { size: written, sha256: hash.digest("hex") };
  } catch (error) {
    if (error instanceof DownloadError) throw error;
    if (stalled) throw new DownloadError("E_DOWNLOAD_STALLED", `GET ${url}: no progress for ${options.stallMs / 1000} s; will resume`, true, error);
    if (options.signal?.aborted) throw error;
    throw new DownloadError("E_DOWNLOAD_NETWORK", `GET ${url}: ${(error as Error).message}`, true, error);
  } finally {
    clearTimeout(watchdog);
    options.signal?.removeEventListener("abort", onCancel);
  }
}
