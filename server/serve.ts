/** `apt-ostree-server serve`: one process serving the repo, the API, the embedded MQTT broker and the store. */
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { hostname } from "node:os";
import { AptOstreeError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import type { ServeSettings } from "./config/settings.ts";
import { createHttpHandler } from "./http/app.ts";
import { DashboardSessions } from "./http/sessions.ts";
import { FleetChanges, notifyingStore } from "./fleet/changes.ts";
import { Metrics } from "./http/metrics.ts";
import { SqliteFleetStore } from "./fleet/store-sqlite.ts";
import { PostgresFleetStore } from "./fleet/store-postgres.ts";
import { PostgresCoordination, SOLE_INSTANCE } from "./fleet/coordination.ts";
import { PostgresFleetChanges } from "./fleet/changes-postgres.ts";
import type { FleetStore } from "./fleet/store.ts";
import { startBroker, type RunningBroker } from "./mqtt/broker.ts";
import { connectExternalBroker, redactUrl } from "./mqtt/external.ts";
import { connectRedisBackbone, redactRedisUrl } from "./mqtt/redis-backbone.ts";
import { createIngest } from "./mqtt/ingest.ts";
import type { Report } from "../shared/wire/report.ts";
import { DEFAULT_TOPIC_PREFIX } from "../shared/wire/topics.ts";
import { readSecretKeyFile } from "../shared/sign/keys.ts";
import { checkCommandKey } from "./keys/command-key.ts";
import { RolloutEngine } from "./fleet/rollouts.ts";
import { DeviceAdmin } from "./fleet/device-admin.ts";
import { autoAcceptSecret } from "./config/auto-accept.ts";
import { ensureServerTls, readServerTls, type ServerTls } from "./tls/tls-dir.ts";
import { handshakeFailureCounter } from "./tls/listeners.ts";
import { brokerCertificates, type BrokerCertificates } from "./tls/broker-certificates.ts";
import { externalBrokerIdentity } from "./mqtt/external-identity.ts";
import { createEnrollment } from "./mqtt/enrollment.ts";
import { createEnrollRoute, type EnrollRoute } from "./http/api/enroll.ts";
import { startDynsecSync, type DynsecSync } from "./mqtt/dynsec/sync.ts";

export interface RunningServer {
  httpPort: number;
  /** Port of the embedded broker; null with --mqtt-url. */
  mqttPort: number | null;
  /** Port of the embedded broker's WebSocket listener (path /mqtt); null when off or external. */
  mqttWsPort: number | null;
  store: FleetStore;
  broker: RunningBroker;
  engine: RolloutEngine;
  /** Where the generated admin token is kept, when none was configured. */
  adminTokenFile: string | null;
  /** The CA clients verify the server with (HTTPS, MQTT over TLS, WSS); null on plain ports. */
  caFile: string | null;
  close(): Promise<void>;
}

export class ServeError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_SERVE", message, { cause });
  }
}

export async function startServer(settings: ServeSettings & { tickMilliseconds?: number }, log: Logger): Promise<RunningServer> {
  if (!(await stat(join(settings.repo, "config")).catch(() => null))) {
    throw new ServeError(`${settings.repo} is not an OSTree repo (no config file); compose and publish into it first, or pass --repo`);
  }
  await mkdir(settings.data, { recursive: true, mode: 0o750 });
  const tls = await serverTls(settings, log);
  const { token, file } = await adminToken(settings);
  const key = settings.signingKey ? await readSecretKeyFile(settings.signingKey) : null;
  if (key) await checkCommandKey(settings.repo, key);
  const enrollmentSecret = await autoAcceptSecret(settings);
  // Broker client certificates (POST /api/v1/enroll, the server's own for an external broker) come from the TLS dir's CA.
  const certificates = tls && settings.tls ? brokerCertificates(settings.tls.dir) : null;
  const externalIdentity = settings.mqttUrl && certificates && /^(mqtts|wss):/.test(settings.mqttUrl) ? await externalBrokerIdentity(certificates, log) : null;
  if (settings.mqttDynsec && !externalIdentity?.current().cert) {
    externalIdentity?.stop();
    throw new ServeError("--mqtt-dynsec drives mosquitto's dynamic-security plugin as apt-ostree:server, the CN of the client certificate the server issues itself: it needs an mqtts:// or wss:// --mqtt-url and a TLS dir holding ca.key (docs/mosquitto/README.md)");
  }
  const metrics = new Metrics();
  metrics.collectProcessMetrics();
  const retention = { maxEventsPerDevice: settings.limits.historyMaxEventsPerDevice, maxAgeDays: settings.limits.historyMaxAgeDays };
  const backend = settings.db ? await PostgresFleetStore.open(settings.db, { retention }) : new SqliteFleetStore(join(settings.data, "fleet.db"), { retention });
  // On a shared database every instance hears every change (NOTIFY), for the dashboards open on it.
  const changes = settings.db ? await PostgresFleetChanges.open(settings.db, log).catch(async (error: unknown) => {
    await backend.close();
    throw error;
  }) : new FleetChanges();
  const store = notifyingStore(backend, changes);
  let engine: RolloutEngine | null = null;
  let broker: RunningBroker;
  let dynsec: DynsecSync | null = null;
  try {
    const onReport = (report: Report) =>
      void engine?.onReport(report).catch((error: unknown) => log.error({ event: "rollout.report.error", err: error, deviceId: report.deviceId }, `could not apply ${report.deviceId}'s report to its rollout: ${(error as Error).message}`));
    const events = { onReport, onOnline: () => void engine?.tick() };
    if (settings.mqttUrl) {
      const external = await connectExternalBroker({
        url: settings.mqttUrl, prefix: DEFAULT_TOPIC_PREFIX, log, metrics,
maxPacketBytes: settings.limits.mqttMaxPacketBytes, ...(externalIdentity ? { tls: externalIdentity.current } : {}),
        ingest: createIngest({ store, prefix: DEFAULT_TOPIC_PREFIX, log, metrics, autoAcceptSecret: enrollmentSecret, limits: settings.limits, now: () => new Date(), ...events }),
      });
      broker = external;
      dynsec = settings.mqttDynsec ? await startDynsecSync({ client: external.client, store, changes, prefix: DEFAULT_TOPIC_PREFIX, log }).catch(async (error: unknown) => {
        await external.close();
        throw error;
      }) : null;
    } else {
      const backbone = settings.brokerRedis ? await connectRedisBackbone(settings.brokerRedis, log) : null;
      broker = await startBroker({ backbone, port: settings.mqttPort, wsPort: settings.mqttWsPort, host: settings.host, tls, prefix: DEFAULT_TOPIC_PREFIX, store, log, metrics, autoAcceptSecret: enrollmentSecret, limits: settings.limits, ...events });
    }
  } catch (error) {
    externalIdentity?.stop();
    await changes.close();
    await store.close();
    const where = settings.mqttUrl ? `connect to the broker ${redactUrl(settings.mqttUrl)}` : `start MQTT on ${settings.host}:${settings.mqttPort}${settings.brokerRedis ? ` joined through ${redactRedisUrl(settings.brokerRedis)}` : ""}`;
    throw new ServeError(`cannot ${where}: ${(error as Error).message}`, error);
  }
  // Several instances may share a PostgreSQL store: one holds the rollout lease (fleet/coordination.ts).
  const coordination = settings.db ? new PostgresCoordination(settings.db, log) : SOLE_INSTANCE;
  engine = new RolloutEngine({ store, repo: settings.repo, key, publish: (topic, payload, retain) => broker.publish(topic, payload, retain), prefix: DEFAULT_TOPIC_PREFIX, log, metrics, coordination, repoUrl: settings.repoUrl });
  await engine.resume();
  const timer = setInterval(() => void engine!.tick(), settings.tickMilliseconds ?? 1000);
  timer.unref();
  // On a shared database the session secret is the database's: a dashboard session works on every instance.
  const sessions = await DashboardSessions.open({ keyFile: join(settings.data, "session-key"), lifetimeSeconds: settings.limits.dashboardSessionHours * 3600, ...(backend instanceof PostgresFleetStore ? { shared: backend.secret("dashboard-session") } : {}) });
  const httpOptions = { requestTimeout: 60_000, headersTimeout: 15_000 };
  const server: Server = tls ? createHttpsServer({ ...httpOptions, cert: tls.cert, key: tls.key, handshakeTimeout: 15_000 }) : createServer(httpOptions);
  if (tls) {
    const handshakeFailed = handshakeFailureCounter(metrics, log);
    server.on("tlsClientError", (error: Error, socket: { remoteAddress?: string }) => handshakeFailed("http", socket.remoteAddress ?? "unknown", error));
  }
  server.on("request", createHttpHandler({ repo: settings.repo, adminToken: token, store, engine, log, metrics, changes, sessions, devices: new DeviceAdmin({ store, broker, prefix: DEFAULT_TOPIC_PREFIX, log }), enroll: enrollRoute(settings, { store, metrics, log, certificates, enrollmentSecret, dynsec }) }));
  try {
    await listen(server, settings.httpPort, settings.host);
  } catch (error) {
    clearInterval(timer);
    dynsec?.stop();
    await broker.close();
    await coordination.close();
    await changes.close();
    await store.close();
    throw error;
  }
  const httpPort = (server.address() as AddressInfo).port;
  // Which instance answered: several may share a store, and each reports the fleet figures alike.
  metrics.gauge("aptostree_server_info", "This server instance (host:HTTP port) and its store; always 1")(1, { instance: `${hostname()}:${httpPort}`, store: settings.db ? "postgresql" : "sqlite" });
  log.info({ event: "serve.started", httpPort, mqttPort: broker.port, host: settings.host, repo: settings.repo, data: settings.data, ca: tls?.caFile ?? null }, `serving on ${tls ? "https" : "http"}://${settings.host}:${httpPort}/`);
  return {
    httpPort,
    mqttPort: broker.port,
    mqttWsPort: broker.wsPort ?? null,
    store,
    broker,
    adminTokenFile: file,
    caFile: tls?.caFile ?? null,
    engine,
    close: async () => {
      clearInterval(timer);
      externalIdentity?.stop();
      dynsec?.stop();
      await engine!.tick();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await broker.close();
      // Frees the lease at once: another instance takes over at its next tick.
      await coordination.close();
      await changes.close();
      await store.close();
    },
  };
}

/** The TLS files serve presents: the configured directory's, or DATA/tls, made on first start. */
async function serverTls(settings: ServeSettings, log: Logger): Promise<ServerTls | null> {
  if (!settings.tls) return null;
  try {
    if (!settings.tls.create) return await readServerTls(settings.tls.dir);
    // The address serve listens on, when it is one, is a name clients use.
    const listening = ["0.0.0.0", "::", ""].includes(settings.host) ? [] : [settings.host];
    return await ensureServerTls(settings.tls.dir, listening, log);
  } catch (error) {
    throw new ServeError(`cannot serve TLS from ${settings.tls.dir}: ${(error as Error).message}; or pass --insecure-plain for plain ports`, error);
  }
}

/** POST /api/v1/enroll: the enrollment rules of the broker's CONNECT and hello, and a broker certificate for accepted devices. */
function enrollRoute(settings: ServeSettings, parts: { store: FleetStore; metrics: Metrics; log: Logger; certificates: BrokerCertificates | null; enrollmentSecret: Uint8Array | null; dynsec: DynsecSync | null }): EnrollRoute {
  const enroll = createEnrollment({ store: parts.store, metrics: parts.metrics, log: parts.log, autoAcceptSecret: parts.enrollmentSecret, maxPendingDevices: settings.limits.maxPendingDevices, maxDevices: settings.limits.maxDevices });
  // With dynamic security, a device accepted by this very request gets its certificate once its dynsec client exists.
  const { dynsec } = parts;
  return createEnrollRoute({ enroll, certificates: parts.certificates, log: parts.log, metrics: parts.metrics, now: () => new Date(), ...(dynsec ? { beforeCertificate: () => dynsec.settled() } : {}) });
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
