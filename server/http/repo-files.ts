/**
 * The archive repo and its signed manifests as static files: Range requests (devices resume
 * interrupted delta downloads), ETag and If-None-Match, HEAD (via `send`). The repo is public
 * and shares its origin with the admin dashboard, so whatever lands in it is served as data:
 *
 * - Inert: every answer carries `x-content-type-options: nosniff` and `content-security-policy:
 *   default-src 'none'; sandbox`; `*.json` (the manifests) is application/json and everything
 *   else application/octet-stream, whatever its name, so a planted `evil.html` or `.svg` never
 *   runs with the dashboard's cookie. ostree's fetcher (libcurl) ignores the type.
 * - Confined: the path is resolved with realpath and answered 404 unless the real file is a
 *   regular, non-hidden file inside the real repo root. Links that stay inside are followed (an
 *   archive repo has none of its own, but an operator may link within it); links out never are.
 *   The checked file is opened once, checked again through /proc/self/fd (where it really is),
 *   and `send` serves that open file, so swapping a directory for a link after the check cannot
 *   redirect the read out of the repo.
 * - Quiet: answers name only the request path; errno and absolute paths go to the log.
 */
import { constants } from "node:fs";
import { open, readlink, realpath, stat, type FileHandle } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { isAbsolute, join, relative, sep } from "node:path";
import { finished } from "node:stream";
import send from "send";
import type { Logger } from "../../shared/log.ts";
import { HttpError } from "./http-error.ts";

export interface RepoFilesOptions {
  repo: string;
  log: Logger;
  /** Called with the bytes of each body sent. */
  onBytes: (bytes: number) => void;
}

const REPO_FILE_HEADERS = {
  "x-content-type-options": "nosniff",
  "content-security-policy": "default-src 'none'; sandbox",
};

/** Errors that mean "there is no such file here", whatever the file system found on the way. */
const NOT_THERE = new Set(["ENOENT", "ENOTDIR", "ENAMETOOLONG", "ELOOP"]);
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/** `path` is the decoded request path inside the repo, starting with `/`. */
export async function serveRepoFile(req: IncomingMessage, res: ServerResponse, path: string, options: RepoFilesOptions): Promise<void> {
  for (const [name, value] of Object.entries(REPO_FILE_HEADERS)) res.setHeader(name, value);
  if (path.split("/").some((segment) => segment.startsWith("."))) {
    throw new HttpError(400, "E_BAD_PATH", `refused path ${JSON.stringify(path)}: it leaves the repo or names a hidden file`);
  }
  const file = await openInsideRepo(path, options);
  return new Promise((resolve, reject) => {
    // Held until the response is over (or was already gone). Should send still reach for
    // /proc/self/fd/N after a client went away, when N may name another file, what it reads
    // goes to a closed socket.
    finished(res, () => {
      void file.close().catch(() => {});
      resolve();
    });
    // The open file, by descriptor: /proc/self/fd/N reopens that very inode.
    const stream = send(req, `/${file.fd}`, { root: "/proc/self/fd", index: false, etag: true, lastModified: true, acceptRanges: true, cacheControl: false });
    stream.on("headers", (response: ServerResponse) => {
      // Objects and deltas are content-addressed; summary, refs and manifests change in place.
      const immutable = /^\/(objects|deltas)\//.test(path);
      response.setHeader("cache-control", immutable ? "public, max-age=31536000, immutable" : "no-cache");
      response.setHeader("content-type", path.endsWith(".json") ? "application/json; charset=utf-8" : "application/octet-stream");
    });
    stream.on("error", (error: Error & { status?: number }) => reject(sendError(error, path, options.log)));
    stream.on("end", () => {
      const length = Number(res.getHeader("content-length") ?? 0);
      if (req.method !== "HEAD" && (res.statusCode === 200 || res.statusCode === 206)) options.onBytes(length);
      resolve();
    });
    stream.pipe(res);
  });
}

/** Opens the regular file `path` names inside the repo, or throws the 404 or 500 to answer. */
async function openInsideRepo(path: string, options: RepoFilesOptions): Promise<FileHandle> {
  const root = await realpath(options.repo).catch((error: NodeJS.ErrnoException) => {
    throw failed(error, path, options.log);
  });
  const visibleInside = (real: string) => {
    const rel = relative(root, real);
    return rel !== "" && !isAbsolute(rel) && !rel.split(sep).some((segment) => segment.startsWith("."));
  };
  let file: FileHandle | null = null;
  try {
    const real = await realpath(join(root, path));
    if (!visibleInside(real)) {
      options.log.warn({ event: "http.repo.outside", path, target: real }, "refused a repo path that resolves outside the repo or to a hidden file");
      throw notFound(path);
    }
    // Opening a FIFO or a device can block or act: only regular files get opened.
    if (!(await stat(real)).isFile()) throw notFound(path);
    file = await open(real, OPEN_FLAGS);
    const opened = await readlink(`/proc/self/fd/${file.fd}`);
    if (!(await file.stat()).isFile() || !visibleInside(opened)) {
      options.log.warn({ event: "http.repo.outside", path, target: opened }, "a repo path changed between its check and its opening");
      throw notFound(path);
    }
    return file;
  } catch (error) {
    await file?.close().catch(() => {});
    if (error instanceof HttpError) throw error;
    throw failed(error as NodeJS.ErrnoException, path, options.log);
  }
}

function notFound(path: string): HttpError {
  return new HttpError(404, "E_NOT_FOUND", `no such file in the repo: ${path}`);
}

/** A file-system error: "not found" for what is not there, otherwise logged and answered without its detail. */
function failed(error: NodeJS.ErrnoException, path: string, log: Logger): HttpError {
  if (error.code && NOT_THERE.has(error.code)) return notFound(path);
  log.error({ event: "http.repo.error", path, err: error }, "cannot read a repo file");
  return new HttpError(500, "E_REPO_FILE", `cannot read ${path} from the repo; the server log says why`);
}

/** `send`'s errors carry the file's absolute path in their message: answer with our own words. */
function sendError(error: Error & { status?: number }, path: string, log: Logger): HttpError {
  const status = error.status ?? 500;
  if (status === 404) return notFound(path);
  if (status === 412) return new HttpError(412, "E_PRECONDITION", `${path} does not match If-Match or If-Unmodified-Since`);
  if (status === 416) return new HttpError(416, "E_RANGE", `the requested range is outside ${path}`);
  log.error({ event: "http.repo.error", path, status, err: error }, "cannot send a repo file");
  return new HttpError(status >= 400 && status < 600 ? status : 500, "E_REPO_FILE", `cannot send ${path} from the repo; the server log says why`);
}
