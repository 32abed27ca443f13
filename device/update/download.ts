/**
 * Downloads one file of a static delta with undici: resumes a partial file with a Range request,
 * aborts a transfer that makes no progress for `stallMs` (the zero-progress watchdog), and checks
 * size and sha256 against the signed manifest before the file is used. Debian's ostree never
 * sends Range and restarts interrupted files from zero (DESIGN.md 5.2); this does not.
 *
 * The signed size is a bound while the bytes arrive, not only a check at the end: a mirror (or
 * anyone on the plain-HTTP path) that sends more is cut off before the byte past it is written,
 * so an endless body cannot fill /var. What is refused or fails verification is removed.
 */
import { createHash } from "node:crypto";
import { mkdir, open, rename, stat, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import type { Dispatcher } from "undici";
import { AptOstreeError } from "../../shared/errors.ts";
import { removeFile } from "../../shared/fs/remove-file.ts";
import { checkDeltaFileDigest, checkDeltaFileSize, DeltaFileMismatchError, hashFileInto, sha256OfFile, verifyDeltaFile } from "../../shared/verify/delta-file.ts";
import type { DeltaFile } from "../../shared/wire/manifest.ts";
import { loadHttpClient } from "./load-http-client.ts";

export type DownloadErrorCode =
  | "E_DOWNLOAD_STALLED"
  | "E_DOWNLOAD_HTTP"
  | "E_DOWNLOAD_NETWORK"
  /** More bytes than the signed manifest allows (announced or sent): refused, not retried. */
  | "E_DOWNLOAD_TOO_LARGE"
  /** A 206 that does not start where the Range asked. */
  | "E_DOWNLOAD_BAD_RANGE"
  /** The part file could not be written: the filesystem is full (ENOSPC) or over quota. */
  | "E_DOWNLOAD_NO_SPACE"
  /** The part file could not be written for another reason (EIO, EROFS). */
  | "E_DOWNLOAD_WRITE";

export class DownloadError extends AptOstreeError {
  declare readonly code: DownloadErrorCode;
  /** Worth another attempt (network trouble, a stall) rather than a refusal. */
  readonly retryable: boolean;
  /**
   * Caused by the device's surroundings (the network away, the disk full), not by the update:
   * retried for as long as it lasts, without spending one of the update's attempts.
   */
  readonly transient: boolean;
  /** The part file is no use to a resume (refused bytes, a Range the server cannot serve) and is removed. */
  readonly discardPart: boolean;
  constructor(code: DownloadErrorCode, message: string, options: { retryable: boolean; transient?: boolean; discardPart?: boolean; cause?: unknown }) {
    super(code, message, { cause: options.cause });
    this.retryable = options.retryable;
    this.transient = options.transient ?? false;
    this.discardPart = options.discardPart ?? false;
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
    const got = have < expected.size ? await fetchInto(url, part, have, expected, options) : { size: have, sha256: await sha256OfFile(part) };
    checkDeltaFileSize(expected, got.size);
    checkDeltaFileDigest(expected, got.sha256);
  } catch (error) {
    // A mismatch or a refusal means the part is bad; anything else (a stall, the network, a
    // cancel) leaves it to resume.
    if (error instanceof DeltaFileMismatchError || (error instanceof DownloadError && error.discardPart)) await removeFile(part);
    throw error;
  }
  await rename(part, dest);
}

/**
 * Appends the rest of the file to `part` (or rewrites it when the server ignores the Range);
 * returns its size and sha256. Never writes past `expected.size`.
 */
async function fetchInto(url: string, part: string, have: number, expected: DeltaFile, options: DownloadOptions): Promise<{ size: number; sha256: string }> {
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
    // The loop below gets the body's errors; this keeps the abort of a refused body from being
    // thrown as uncaught when nothing reads it.
    response.body.on("error", () => undefined);
    if (response.statusCode !== 200 && response.statusCode !== 206) {
      await response.body.dump();
      const { statusCode } = response;
      // 416: the server has nothing past what the part holds, so the part is not a prefix of its file.
      throw new DownloadError("E_DOWNLOAD_HTTP", `GET ${url}: HTTP ${statusCode}`, { retryable: statusCode >= 500 || statusCode === 429 || statusCode === 416, transient: statusCode >= 500 || statusCode === 429, discardPart: statusCode === 416 });
    }
    // 200 to a Range request: the server sent the whole file; start over.
    const from = response.statusCode === 206 ? have : 0;
    const refusal = refuseHeaders(url, response, have, from, expected);
    if (refusal) {
      abort.abort();
      throw refusal;
    }
    let written = from;
    const hash = from > 0 ? await hashFileInto(createHash("sha256"), part) : createHash("sha256");
    // A file handle, not a write stream: a failed write (ENOSPC) is a rejection here, never an
    // 'error' event that nothing listens to, which would end the process.
    const out = await open(part, from > 0 ? "a" : "w").catch((error: NodeJS.ErrnoException) => {
      throw writeFailure(part, error);
    });
    try {
      for await (const chunk of response.body) {
        kick();
        const bytes = chunk as Buffer;
        if (written + bytes.length > expected.size) {
          // Not even this chunk is written: the part never exceeds the signed size.
          abort.abort();
          throw new DownloadError("E_DOWNLOAD_TOO_LARGE", `GET ${url}: the body goes on past the ${expected.size} bytes the signed manifest allows for ${expected.path}; refusing it`, { retryable: false, discardPart: true });
        }
        await writeAll(out, bytes, part);
        hash.update(bytes);
        written += bytes.length;
        options.onBytes?.(written);
      }
    } catch (error) {
      if (error instanceof DownloadError && error.code === "E_DOWNLOAD_NO_SPACE") abort.abort();
      throw error;
    } finally {
      await out.close().catch(() => undefined);
    }
    return { size: written, sha256: hash.digest("hex") };
  } catch (error) {
    if (error instanceof DownloadError) throw error;
    if (stalled) throw new DownloadError("E_DOWNLOAD_STALLED", `GET ${url}: no progress for ${options.stallMs / 1000} s; will resume`, { retryable: true, transient: true, cause: error });
    if (options.signal?.aborted) throw error;
    // A certificate refused (another CA, a name it does not carry, a clock outside its validity) is
    // not an outage to wait out: it spends the update's attempts and then fails, saying why.
    const tls = (error as { code?: string }).code === "E_TLS";
    throw new DownloadError("E_DOWNLOAD_NETWORK", `GET ${url}: ${(error as Error).message}`, { retryable: true, transient: !tls, cause: error });
  } finally {
    clearTimeout(watchdog);
    options.signal?.removeEventListener("abort", onCancel);
  }
}

/** Writes all of `bytes` (a short write is continued); a failed write is a DownloadError. */
async function writeAll(out: FileHandle, bytes: Buffer, part: string): Promise<void> {
  try {
    for (let offset = 0; offset < bytes.length; ) offset += (await out.write(bytes, offset, bytes.length - offset)).bytesWritten;
  } catch (error) {
    throw writeFailure(part, error as NodeJS.ErrnoException);
  }
}

/**
 * A part file that cannot be written. Out of space: transient (retried when there is room again),
 * and the part is removed, since what a failed write left in it is unknown and the space it holds
 * is the running system's. Anything else is a local fault worth one more attempt.
 */
function writeFailure(part: string, error: NodeJS.ErrnoException): DownloadError {
  const full = error.code === "ENOSPC" || error.code === "EDQUOT";
  return new DownloadError(full ? "E_DOWNLOAD_NO_SPACE" : "E_DOWNLOAD_WRITE", `cannot write ${part}: ${error.message}${full ? "; waiting for space" : ""}`, { retryable: true, transient: full, discardPart: true, cause: error });
}

/**
 * What the headers alone refuse, before a byte of the body is read: a 206 that does not start at
 * `have` (the Range asked for), or a Content-Length beyond what the signed size leaves from `from`.
 */
function refuseHeaders(url: string, response: Dispatcher.ResponseData, have: number, from: number, expected: DeltaFile): DownloadError | null {
  if (response.statusCode === 206) {
    const range = response.headers["content-range"];
    const start = typeof range === "string" ? /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(range.trim())?.[1] : undefined;
    if (start === undefined || Number(start) !== have) {
      // Retried from byte 0: without a part there is no Range to answer wrongly.
      return new DownloadError("E_DOWNLOAD_BAD_RANGE", `GET ${url}: asked for bytes=${have}-, the server answered 206 with Content-Range ${typeof range === "string" ? range : "(none)"}; refusing it and starting over`, { retryable: true, discardPart: true });
    }
  }
  const length = response.headers["content-length"];
  if (typeof length === "string" && /^\d+$/.test(length) && Number(length) > expected.size - from) {
    return new DownloadError(
      "E_DOWNLOAD_TOO_LARGE",
      `GET ${url}: Content-Length ${length} from byte ${from} is more than the ${expected.size} bytes the signed manifest allows for ${expected.path}; refusing it`,
      { retryable: false, discardPart: true },
    );
  }
  return null;
}
