/**
 * The HTTP surface of `serve`: the repo as static files (public), liveness and metrics, and the
 * admin API under /api/v1 (bearer token). Paths are checked segment by segment before routing,
 * so `..` and encoded tricks get a 400 that says why instead of a silent normalisation.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../../shared/log.ts";
import type { FleetStore } from "../fleet/store.ts";
import type { RolloutEngine } from "../fleet/rollouts.ts";
import { createRollout, describeRollout, withRolloutErrors } from "./api/rollouts.ts";
import { readJsonBody } from "./body.ts";
import { readFleetSummary } from "../fleet/summary.ts";
import type { DeviceAdmin } from "../fleet/device-admin.ts";
import { acceptDevice, deleteDevice, getDevice, listDevices, preauthorizeDevice, rejectDevice, rekeyDevice, revokeDevice, setDeviceGroups, setDeviceTags } from "./api/devices.ts";
import { fleetGauges } from "./fleet-metrics.ts";
import { listReleases } from "./api/releases.ts";
import { OPENAPI } from "./api/openapi.ts";
import type { EnrollRoute } from "./api/enroll.ts";
import { requireAdmin } from "./auth.ts";
import type { DashboardSessions } from "./sessions.ts";
import { handleLogin, handleLogout, serveDashboardAsset, serveDashboardPage, serveEvents, serveLoginPage } from "./dashboard.ts";
import type { FleetChanges } from "../fleet/changes.ts";
import { HttpError, sendError, sendJson } from "./http-error.ts";
import type { Metrics } from "./metrics.ts";
import { serveRepoFile } from "./repo-files.ts";

export interface HttpAppOptions {
  repo: string;
  adminToken: string;
  store: FleetStore;
  engine: RolloutEngine;
  log: Logger;
  metrics: Metrics;
  /** Fleet changes, for the dashboard's live event stream. */
  changes: FleetChanges;
  /** Dashboard session cookies: issued at login, checked on each request, all ended on demand. */
  sessions: DashboardSessions;
  /** Enrollment actions (preauthorize, accept, reject, revoke, rekey), groups and deletion (ending connections, clearing retained messages). */
  devices: DeviceAdmin;
  /** POST /api/v1/enroll (a device's signed token, not the admin token): enrollment and the broker certificate; absent: 404. */
  enroll?: EnrollRoute;
  now?: () => Date;
}

export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function createHttpHandler(options: HttpAppOptions): HttpHandler {
  const requests = options.metrics.counter("aptostree_http_requests_total", "HTTP requests answered, by status code");
  const bytesServed = options.metrics.counter("aptostree_http_bytes_served_total", "Bytes of repo files sent (bodies of 200 and 206 answers)");
  // Aggregate queries, not a read of every device (issue 18, finding 3).
  const updateFleetGauges = fleetGauges(options.metrics, options.store);
  const summary = () => readFleetSummary(options.store);

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const segments = pathSegments(req.url ?? "/");
    const method = req.method ?? "GET";
    const [head, ...rest] = segments;
    // Not for the repo's files: only what reads a session. A shared secret that cannot be read keeps the one held.
    if (head !== "repo") await options.sessions.refresh().catch((error: Error) => options.log.warn({ event: "http.sessions.refresh-failed", err: error }, `cannot read the shared session secret: ${error.message}`));
    if (head === undefined) return only(method, ["GET", "HEAD"], () => serveDashboardPage(req, res, options.adminToken, options.sessions));
    if (head === "login" && rest.length === 0) {
      if (method === "POST") return handleLogin(req, res, options.adminToken, options.sessions);
      return only(method, ["GET", "POST"], () => serveLoginPage(req, res));
    }
    if (head === "logout" && rest.length === 0) return only(method, ["POST"], () => handleLogout(res));
    if (head === "assets" && rest.length === 1) return only(method, ["GET", "HEAD"], () => serveDashboardAsset(req, res, rest[0]!));
    if (head === "healthz" && rest.length === 0) return only(method, ["GET", "HEAD"], () => sendJson(res, 200, { status: "ok" }));
    if (head === "metrics" && rest.length === 0) {
      return only(method, ["GET"], async () => {
        await updateFleetGauges();
        const text = await options.metrics.renderAll();
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-length": Buffer.byteLength(text) });
        res.end(text);
      });
    }
    if (head === "repo" && rest.length > 0) {
      return only(method, ["GET", "HEAD"], () => serveRepoFile(req, res, `/${rest.join("/")}`, { repo: options.repo, log: options.log, onBytes: (n) => bytesServed(n) }));
    }
    if (head === "api" && rest[0] === "v1") {
      const resource = rest.slice(1);
      if (resource.join("/") === "openapi.json") return only(method, ["GET"], () => sendJson(res, 200, OPENAPI));
      if (resource.join("/") === "enroll" && options.enroll) {
        const enroll = options.enroll;
        return only(method, ["POST"], async () => {
          const answer = await enroll(await readJsonBody(req));
          sendJson(res, answer.status, answer.body);
        });
      }
      requireAdmin(req, options.adminToken, options.sessions);
      if (resource.join("/") === "sessions/revoke") {
        return only(method, ["POST"], async () => {
          await options.sessions.revokeAll();
          options.log.warn({ event: "http.sessions.revoked" }, "every dashboard session was ended");
          sendJson(res, 200, { revoked: true });
        });
      }
      if (resource.join("/") === "events") return only(method, ["GET"], () => serveEvents(req, res, options.changes));
      if (resource.join("/") === "fleet") return only(method, ["GET"], async () => sendJson(res, 200, await summary()));
      if (resource.join("/") === "releases") return only(method, ["GET"], async () => sendJson(res, 200, { releases: await listReleases(options.repo) }));
      if (resource[0] === "devices") {
        const [, id, action] = resource;
        if (id === undefined) {
          if (method === "POST") return sendJson(res, 201, await preauthorizeDevice(options.devices, await readJsonBody(req)));
          return only(method, ["GET", "POST"], async () => sendJson(res, 200, await listDevices(options.store)));
        }
        if (action === undefined && resource.length === 2) {
          if (method === "DELETE") return sendJson(res, 200, await deleteDevice(options.store, options.devices, id));
          return only(method, ["GET", "DELETE"], async () => sendJson(res, 200, await getDevice(options.store, id)));
        }
        if (action === "reject" && resource.length === 3) return only(method, ["POST"], async () => sendJson(res, 200, await rejectDevice(options.store, options.devices, id)));
        if (action === "accept" && resource.length === 3) return only(method, ["POST"], async () => sendJson(res, 200, await acceptDevice(options.store, options.devices, id)));
        if (action === "revoke" && resource.length === 3) return only(method, ["POST"], async () => sendJson(res, 200, await revokeDevice(options.store, options.devices, id)));
        if (action === "rekey" && resource.length === 3) return only(method, ["POST"], async () => sendJson(res, 200, await rekeyDevice(options.store, options.devices, id, await readJsonBody(req))));
        if (action === "groups" && resource.length === 3) return only(method, ["POST"], async () => sendJson(res, 200, await setDeviceGroups(options.store, options.devices, id, await readJsonBody(req))));
        if (action === "tags" && resource.length === 3) return only(method, ["POST"], async () => sendJson(res, 200, await setDeviceTags(options.store, id, await readJsonBody(req))));
      }
      if (resource[0] === "rollouts") {
        const [, id, action] = resource;
        if (id === undefined) {
          if (method === "POST") return sendJson(res, 201, { rollout: await describeRollout(options.store, await createRollout(options.engine, await readJsonBody(req))) });
          return only(method, ["GET", "POST"], async () => sendJson(res, 200, { rollouts: await Promise.all((await options.store.listRollouts()).map((r) => describeRollout(options.store, r))) }));
        }
        if (action === undefined && resource.length === 2) {
          return only(method, ["GET"], async () => {
            const rollout = await options.store.getRollout(id);
            if (!rollout) throw new HttpError(404, "E_ROLLOUT_NOT_FOUND", `no rollout '${id}'`);
            sendJson(res, 200, { rollout: await describeRollout(options.store, rollout) });
          });
        }
        if ((action === "pause" || action === "resume" || action === "abort") && resource.length === 3) {
          return only(method, ["POST"], async () => sendJson(res, 200, { rollout: await describeRollout(options.store, await withRolloutErrors(() => options.engine.setState(id, action))) }));
        }
      }
    }
    throw new HttpError(404, "E_NOT_FOUND", `no route for ${method} /${segments.join("/")}`);
  };

  return (req, res) => {
    const started = Date.now();
    res.on("finish", () => {
      requests(1, { code: String(res.statusCode) });
      options.log.debug({ event: "http.request", method: req.method, url: req.url, status: res.statusCode, ms: Date.now() - started }, "request");
    });
    route(req, res).catch((error: unknown) => {
      const httpError = error instanceof HttpError ? error : new HttpError(500, "E_INTERNAL", "internal error; see the server log");
      if (!(error instanceof HttpError)) options.log.error({ event: "http.error", err: error, url: req.url }, "request failed");
      if (res.headersSent) res.destroy();
      else sendError(res, httpError);
    });
  };
}

async function only(method: string, allowed: string[], handler: () => void | Promise<void>): Promise<void> {
  if (!allowed.includes(method)) throw new HttpError(405, "E_METHOD", `method ${method} is not allowed here (allowed: ${allowed.join(", ")})`);
  await handler();
}

/** Decoded path segments; rejects what could escape a directory or confuse a file system. */
export function pathSegments(url: string): string[] {
  const rawPath = url.split("?")[0]!;
  const segments: string[] = [];
  for (const raw of rawPath.split("/").filter((s) => s !== "")) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      throw new HttpError(400, "E_BAD_PATH", `path segment '${raw}' is not valid percent-encoding`);
    }
    if (segment === ".." || segment === "." || /[\\/\0]/.test(segment)) {
      throw new HttpError(400, "E_BAD_PATH", `refused path segment ${JSON.stringify(segment)}: paths may not leave the served directory`);
    }
    segments.push(segment);
  }
  return segments;
}
