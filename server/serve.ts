/** `apt-ostree-server serve`: one process serving the repo, the API and (next) MQTT. */
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { AptOstreeError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import type { ServeSettings } from "./config/settings.ts";
import { createHttpHandler } from "./http/app.ts";
import { Metrics } from "./http/metrics.ts";

export interface RunningServer {
  httpPort: number;
  /** Where the generated admin token is kept, when none was configured. */
  adminTokenFile: string | null;
  close(): Promise<void>;
}

export class ServeError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_SERVE", message, { cause });
  }
}

export async function startServer(settings: ServeSettings, log: Logger): Promise<RunningServer> {
  if (!(await stat(join(settings.repo, "config")).catch(() => null))) {
    throw new ServeError(`${settings.repo} is not an OSTree repo (no config file); compose and publish into it first, or pass --repo`);
  }
  await mkdir(settings.data, { recursive: true, mode: 0o750 });
  const { token, file } = await adminToken(settings);
  const metrics = new Metrics();
  const server = createServer({ requestTimeout: 60_000, headersTimeout: 15_000 }, createHttpHandler({ repo: settings.repo, adminToken: token, log, metrics }));
  await listen(server, settings.httpPort, settings.host);
  const httpPort = (server.address() as AddressInfo).port;
  log.info({ event: "serve.started", httpPort, host: settings.host, repo: settings.repo, data: settings.data }, `serving on http://${settings.host}:${httpPort}/`);
  return {
    httpPort,
    adminTokenFile: file,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The configured token, or one generated on first start and kept (0600) in the data dir. */
async function adminToken(settings: ServeSettings): Promise<{ token: string; file: string | null }> {
  if (settings.adminToken !== null) return { token: settings.adminToken, file: null };
  const file = join(settings.data, "admin-token");
  const existing = await readFile(file, "utf8").catch(() => null);
  if (existing?.trim()) return { token: existing.trim(), file };
  const token = randomBytes(24).toString("base64url");
  await writeFile(file, `${token}\n`, { mode: 0o600, flag: "wx" });
  return { token, file };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(new ServeError(error.code === "EADDRINUSE" ? `port ${port} on ${host} is already in use; pass another --http-port` : `cannot listen on ${host}:${port}: ${error.message}`, error)),
    );
    server.listen(port, host, () => resolve());
  });
}
