/**
 * The operator's dashboard: a login form that turns the admin token into a session cookie, the
 * page at `/` and its static assets (server/dashboard/), and the live event stream the pages
 * listen to (`/api/v1/events`, server-sent events). The pages read the same REST API as the CLI.
 */
import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import type { FleetChanges } from "../fleet/changes.ts";
import { hasSession, SESSION_COOKIE, tokenMatches } from "./auth.ts";
import type { DashboardSessions } from "./sessions.ts";
import { readFormBody } from "./body.ts";
import { HttpError } from "./http-error.ts";

const ASSETS_DIR = fileURLToPath(new URL("../dashboard/", import.meta.url));
/** Asset name -> content type; a Map, so a request for `constructor` finds nothing (it found Object's). */
const ASSETS = new Map<string, string>([
  ["app.js", "text/javascript; charset=utf-8"],
  ["app.css", "text/css; charset=utf-8"],
]);
/** Keeps proxies from closing an idle event stream. */
const HEARTBEAT_MS = 15_000;

const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

export async function serveDashboardPage(req: IncomingMessage, res: ServerResponse, adminToken: string, sessions: DashboardSessions): Promise<void> {
  if (!hasSession(req, adminToken, sessions)) return redirect(res, "/login");
  const html = await readFile(`${ASSETS_DIR}index.html`);
  res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": html.length, "cache-control": "no-store", ...SECURITY_HEADERS });
  res.end(req.method === "HEAD" ? undefined : html);
}

export async function serveDashboardAsset(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
  const type = ASSETS.get(name);
  if (!type) throw new HttpError(404, "E_NOT_FOUND", `no dashboard asset '${name}'`);
  const body = await readFile(`${ASSETS_DIR}${name}`);
  res.writeHead(200, { "content-type": type, "content-length": body.length, "cache-control": "no-cache", ...SECURITY_HEADERS });
  res.end(req.method === "HEAD" ? undefined : body);
}

export function serveLoginPage(req: IncomingMessage, res: ServerResponse): void {
  const failed = new URL(req.url ?? "/", "http://x").searchParams.has("failed");
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · apt-ostree</title><link rel="stylesheet" href="/assets/app.css"></head>
<body class="login"><main>
<h1>apt-ostree</h1>
<form method="post" action="/login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
${failed ? '<p class="error" role="alert">That is not the admin token (APT_OSTREE_ADMIN_TOKEN, or the admin-token file in the data directory).</p>' : ""}
<button type="submit">Sign in</button>
</form></main></body></html>`;
  res.writeHead(failed ? 401 : 200, { "content-type": "text/html; charset=utf-8", "content-length": Buffer.byteLength(html), "cache-control": "no-store", ...SECURITY_HEADERS });
  res.end(html);
}

export async function handleLogin(req: IncomingMessage, res: ServerResponse, adminToken: string, sessions: DashboardSessions): Promise<void> {
  const token = (await readFormBody(req)).get("token") ?? "";
  if (!tokenMatches(token, adminToken)) return redirect(res, "/login?failed");
  const session = sessions.issue(adminToken);
  redirect(res, "/", { "set-cookie": `${SESSION_COOKIE}=${session.value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${session.maxAgeSeconds}` });
}

export function handleLogout(res: ServerResponse): void {
  redirect(res, "/login", { "set-cookie": `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0` });
}

/** `text/event-stream` of fleet changes: `event: change`, data `{"kind":"device"|"rollout","id":…}`. */
export function serveEvents(req: IncomingMessage, res: ServerResponse, changes: FleetChanges): void {
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", connection: "keep-alive" });
  res.write("retry: 2000\n\n");
  const unsubscribe = changes.subscribe((change) => res.write(`event: change\ndata: ${JSON.stringify(change)}\n\n`));
  const heartbeat = setInterval(() => res.write(": heartbeat\n\n"), HEARTBEAT_MS);
  req.on("close", () => {
    clearInterval(heartbeat);
    unsubscribe();
  });
}

function redirect(res: ServerResponse, location: string, headers: Record<string, string> = {}): void {
  res.writeHead(303, { location, "content-length": 0, ...headers });
  res.end();
}
