import type { IncomingMessage } from "node:http";
import { HttpError } from "./http-error.ts";

export const MAX_BODY_BYTES = 64 * 1024;

/** Reads a JSON request body: 413 above the limit, 415 for another type, 400 for malformed JSON. */
export async function readJsonBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const text = await readBody(req, /^application\/json\b/i, "application/json", limit);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, "E_MALFORMED_JSON", `the body is not valid JSON: ${(error as Error).message}`);
  }
}

/** Reads an HTML form's body (application/x-www-form-urlencoded), with the same limits. */
export async function readFormBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<URLSearchParams> {
  return new URLSearchParams(await readBody(req, /^application\/x-www-form-urlencoded\b/i, "application/x-www-form-urlencoded", limit));
}

async function readBody(req: IncomingMessage, type: RegExp, typeName: string, limit: number): Promise<string> {
  const got = req.headers["content-type"] ?? "";
  if (!type.test(got)) throw new HttpError(415, "E_CONTENT_TYPE", `send the body as ${typeName} (got '${got || "nothing"}')`);
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limit) throw new HttpError(413, "E_BODY_TOO_LARGE", `the body is ${declared} bytes; the limit is ${limit}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, "E_BODY_TOO_LARGE", `the body passes the ${limit}-byte limit`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}
