/**
 * A hostile mirror on loopback in front of the real server's repo: it serves the real files,
 * except for the paths a case gives a rule, which get mutated bytes, a body that never ends or
 * is longer than announced, a stall after the headers or half the body, a reset, a 206 at the
 * wrong offset, or an error status. Every request is logged with its Range.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export const FILE_MODES = ["mutated", "same-size", "endless", "oversized-length", "longer-chunked", "short-close", "stall-headers", "stall-half", "reset-half", "status"] as const;
export type FileMode = (typeof FILE_MODES)[number] | "ok" | "wrong-range";

export interface FileRule {
  mode: FileMode;
  /** The body for "mutated" and "same-size". */
  bytes?: Buffer;
  status?: number;
  /** Send "mutated" bytes without a Content-Length. */
  chunked?: boolean;
}

export class HostileMirror {
  url = "";
  /** Rules by path under /repo/; other paths are the real files, or 404 when `fallback` says so. */
  readonly rules = new Map<string, FileRule>();
  fallback: "ok" | "404" = "ok";
  readonly requests: Array<{ path: string; range: string | undefined }> = [];
  private server: Server | null = null;
  private readonly cache = new Map<string, Buffer | null>();

  /** `upstream`: the real server's base URL (http://127.0.0.1:PORT). */
  constructor(private readonly upstream: string) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.answer(req, res).catch(() => res.destroy()));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  /** Drops every rule and hangs up on whatever is still stalled. */
  reset(fallback: "ok" | "404" = "ok"): void {
    this.rules.clear();
    this.fallback = fallback;
    this.server?.closeAllConnections();
  }

  /** The real file at `path` under the repo, or null. */
  async real(path: string): Promise<Buffer | null> {
    if (!this.cache.has(path)) {
      const response = await fetch(`${this.upstream}/repo/${path}`);
      this.cache.set(path, response.ok ? Buffer.from(await response.arrayBuffer()) : null);
    }
    return this.cache.get(path)!;
  }

  private async answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = decodeURIComponent((req.url ?? "/").split("?")[0]!).replace(/^\/repo\//, "");
    this.requests.push({ path, range: req.headers.range });
    res.on("error", () => undefined);
    const rule = this.rules.get(path) ?? (this.fallback === "404" ? { mode: "status" as const, status: 404 } : { mode: "ok" as const });
    const real = rule.mode === "status" ? null : await this.real(path);
    if (rule.mode !== "status" && rule.mode !== "mutated" && real === null) return void res.writeHead(404).end();
    const body = rule.bytes ?? real!;
    const from = req.headers.range ? Number(/bytes=(\d+)-/.exec(req.headers.range)?.[1] ?? 0) : 0;
    switch (rule.mode) {
      case "ok":
        res.writeHead(from > 0 ? 206 : 200, { "content-length": body.length - from, ...(from > 0 ? { "content-range": `bytes ${from}-${body.length - 1}/${body.length}` } : {}) });
        return void res.end(body.subarray(from));
      case "mutated":
      case "same-size":
        res.writeHead(200, rule.chunked ? {} : { "content-length": body.length });
        return void res.end(body);
      case "endless": {
        res.writeHead(200);
        const chunk = Buffer.alloc(64 * 1024, 0x5a);
        const write = () => {
          while (!res.destroyed) if (!res.write(chunk)) return void res.once("drain", write);
        };
        return write();
      }
      case "oversized-length":
        res.writeHead(200, { "content-length": body.length + 1 + (body.length % 997) });
        return void res.end(Buffer.concat([body, Buffer.alloc(1 + (body.length % 997), 0x21)]));
      case "longer-chunked":
        res.writeHead(200);
        return void res.end(Buffer.concat([body, Buffer.from("one byte more")]));
      case "short-close":
        res.writeHead(200, { "content-length": body.length });
        res.write(body.subarray(0, Math.floor(body.length / 3)));
        return void setTimeout(() => res.socket?.destroy(), 50);
      case "stall-headers":
        res.writeHead(200, { "content-length": body.length });
        return void res.flushHeaders();
      case "stall-half":
        res.writeHead(200, { "content-length": body.length });
        return void res.write(body.subarray(0, Math.floor(body.length / 2)));
      case "reset-half":
        res.writeHead(200, { "content-length": body.length });
        res.write(body.subarray(0, Math.floor(body.length / 2)));
        return void setImmediate(() => res.socket?.resetAndDestroy());
      case "wrong-range": {
        // Asked for `from-`, answers from earlier: appended, the file would be wrong.
        const start = Math.max(0, from - 1 - (from % 4096));
        res.writeHead(206, { "content-length": body.length - start, "content-range": `bytes ${start}-${body.length - 1}/${body.length}` });
        return void res.end(body.subarray(start));
      }
      case "status":
        return void res.writeHead(rule.status ?? 404).end();
    }
  }
}
