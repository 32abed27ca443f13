import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { HttpError } from "./http-error.ts";

/** The admin API needs `Authorization: Bearer <token>`; compared in constant time. */
export function requireAdmin(req: IncomingMessage, adminToken: string): void {
  const header = req.headers.authorization ?? "";
  const match = /^Bearer (.+)$/i.exec(header);
  if (!match) throw new HttpError(401, "E_UNAUTHENTICATED", "the admin API needs 'Authorization: Bearer <token>' (APT_OSTREE_ADMIN_TOKEN on the server)");
  const digest = (text: string) => createHash("sha256").update(text).digest();
  if (!timingSafeEqual(digest(match[1]!), digest(adminToken))) throw new HttpError(401, "E_BAD_TOKEN", "the bearer token is not the admin token");
}
