/**
 * The archive repo and its signed manifests as static files: Range requests (devices resume
 * interrupted delta downloads), ETag and If-None-Match, HEAD. `send` confines paths to the
 * repo and refuses `..`; its errors become our JSON errors.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import send from "send";
import { HttpError } from "./http-error.ts";

export interface RepoFilesOptions {
  repo: string;
  /** Called with the bytes of each body sent. */
  onBytes: (bytes: number) => void;
}

export function serveRepoFile(req: IncomingMessage, res: ServerResponse, path: string, options: RepoFilesOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = send(req, path, {
      root: options.repo,
      dotfiles: "deny",
      index: false,
      etag: true,
      lastModified: true,
      acceptRanges: true,
      // Objects and deltas are content-addressed; summary, refs and manifests change in place.
      cacheControl: false,
    });
    stream.on("headers", (response: ServerResponse) => {
      const immutable = /^\/(objects|deltas)\//.test(path);
      response.setHeader("cache-control", immutable ? "public, max-age=31536000, immutable" : "no-cache");
      if (path.endsWith(".json")) response.setHeader("content-type", "application/json; charset=utf-8");
    });
    stream.on("error", (error: { status?: number; message: string }) => {
      const status = error.status ?? 500;
      if (status === 404) reject(new HttpError(404, "E_NOT_FOUND", `no such file in the repo: ${path}`));
      else if (status === 403 || status === 400) reject(new HttpError(400, "E_BAD_PATH", `refused path ${JSON.stringify(path)}: it leaves the repo or names a hidden file`));
      else reject(new HttpError(status, "E_REPO_FILE", error.message));
    });
    stream.on("end", () => {
      const length = Number(res.getHeader("content-length") ?? 0);
      if (req.method !== "HEAD" && (res.statusCode === 200 || res.statusCode === 206)) options.onBytes(length);
      resolve();
    });
    stream.pipe(res);
    res.on("close", () => resolve());
  });
}
