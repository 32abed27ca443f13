import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { HttpError } from "./http-error.ts";
import type { DashboardSessions } from "./sessions.ts";

/** The dashboard's session cookie: HttpOnly, SameSite=Strict, issued by DashboardSessions. */
export const SESSION_COOKIE = "apt_ostree_session";
/** Cookie-authenticated writes must carry this header (a cross-site form cannot set it). */
export const WRITE_HEADER = "x-apt-ostree-request";

const digest = (text: string) => createHash("sha256").update(text).digest();
const same = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

export function tokenMatches(candidate: string, adminToken: string): boolean {
  return same(candidate, adminToken);
}

export function cookieValue(req: IncomingMessage, name: string): string | null {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return value.join("=");
  }
  return null;
}

/** True when the request carries a valid dashboard session cookie. */
export function hasSession(req: IncomingMessage, adminToken: string, sessions: DashboardSessions): boolean {
  const cookie = cookieValue(req, SESSION_COOKIE);
  return cookie !== null && sessions.valid(cookie, adminToken);
}

/**
 * The admin API needs `Authorization: Bearer <token>` (compared in constant time), or the
 * dashboard's session cookie; a write with the cookie must also carry the WRITE_HEADER.
 */
export function requireAdmin(req: IncomingMessage, adminToken: string, sessions: DashboardSessions): void {
  const header = req.headers.authorization ?? "";
  const match = /^Bearer (.+)$/i.exec(header);
  if (match) {
    if (!same(match[1]!, adminToken)) throw new HttpError(401, "E_BAD_TOKEN", "the bearer token is not the admin token");
    return;
  }
  if (hasSession(req, adminToken, sessions)) {
    const write = !["GET", "HEAD"].includes(req.method ?? "GET");
    if (write && req.headers[WRITE_HEADER] !== "1") throw new HttpError(403, "E_CSRF", `a change made with the dashboard's session needs the '${WRITE_HEADER}: 1' header`);
    return;
  }
  throw new HttpError(401, "E_UNAUTHENTICATED", "the admin API needs 'Authorization: Bearer <token>' (APT_OSTREE_ADMIN_TOKEN on the server)");
}
