import type { ServerResponse } from "node:http";
import { AptOstreeError } from "../../shared/errors.ts";

/** An error answered to an HTTP client: status, stable code, message a user can act on. */
export class HttpError extends AptOstreeError {
  readonly status: number;
  constructor(status: number, code: string, message: string) {
    super(code, message);
    this.status = status;
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** `{"error": {"code", "message"}}`, the shape of every API error. */
export function sendError(res: ServerResponse, error: HttpError): void {
  const headers: Record<string, string> = error.status === 401 ? { "www-authenticate": 'Bearer realm="apt-ostree"' } : {};
  sendJson(res, error.status, { error: { code: error.code, message: error.message } }, headers);
}
