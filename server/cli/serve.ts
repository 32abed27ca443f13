import { resolve } from "node:path";
import { defineCommand } from "../../shared/cli/command.ts";
import { createLogger } from "../../shared/log.ts";
import { readConfigFile, resolveServeSettings, SERVE_DEFAULTS, type ConfigFile } from "../config/settings.ts";
import { startServer } from "../serve.ts";
import { redactUrl } from "../mqtt/external.ts";

export const serveCommand = defineCommand({
  name: "serve",
  description: "Serve the OSTree repo and its signed manifests over HTTP, with the admin API, /healthz and /metrics.",
  options: {
    repo: { type: "string", valueName: "DIR", description: `Archive repo to serve at /repo/ (env APT_OSTREE_REPO; default ${SERVE_DEFAULTS.repo})` },
    data: { type: "string", valueName: "DIR", description: `Server state (env APT_OSTREE_DATA; default ${SERVE_DEFAULTS.data})` },
    "http-port": { type: "string", valueName: "N", description: `HTTP port, 0 for any free one (env APT_OSTREE_HTTP_PORT; default ${SERVE_DEFAULTS.httpPort})` },
    "mqtt-port": { type: "string", valueName: "N", description: `Embedded MQTT broker port, 0 for any free one (env APT_OSTREE_MQTT_PORT; default ${SERVE_DEFAULTS.mqttPort})` },
    "mqtt-ws-port": { type: "string", valueName: "N|off", description: `MQTT over WebSocket port, path /mqtt (env APT_OSTREE_MQTT_WS_PORT; default ${SERVE_DEFAULTS.mqttWsPort})` },
    "mqtt-url": { type: "string", valueName: "URL", description: "Use this external broker (mqtts://host:port, or mqtt://user:pass@host:port) instead of the embedded one; over mqtts:// the server presents a client certificate from the TLS dir's CA (env APT_OSTREE_MQTT_URL)" },
    db: { type: "string", valueName: "URL", description: "Keep the fleet in this PostgreSQL database (postgres://user:pass@host:5432/db), which several serve instances may share; default SQLite in the data dir (env APT_OSTREE_DB)" },
    "repo-url": { type: "string", valueName: "URL", description: "Devices fetch the repo from this static host or CDN (the publish output copied there) instead of this server's /repo: update commands name it, signed (env APT_OSTREE_REPO_URL)" },
    "broker-redis": { type: "string", valueName: "URL", description: "Join this instance's embedded broker to the other instances' through Redis (redis://host:6379/0, a database per fleet): a device may connect to any instance; retained commands and last wills live in Redis (env APT_OSTREE_BROKER_REDIS)" },
    "mqtt-dynsec": { type: "boolean", description: "With an mqtts:// --mqtt-url to mosquitto: keep its dynamic-security plugin in step with the fleet, so revoking a device ends its connection at once and groups open their command topics (docs/mosquitto/; env APT_OSTREE_MQTT_DYNSEC=1)" },
    "auto-accept": { type: "boolean", description: "Accept unknown devices at their first connection when they prove the fleet enrollment secret (env APT_OSTREE_AUTO_ACCEPT=1; needs --enrollment-secret-file)" },
    "enrollment-secret-file": { type: "string", valueName: "FILE", description: "The fleet enrollment secret devices prove for --auto-accept, at least 16 bytes (env APT_OSTREE_ENROLLMENT_SECRET_FILE)" },
    key: { type: "string", valueName: "FILE", description: "ed25519 secret key that signs rollout commands (env APT_OSTREE_SIGNING_KEY)" },
    host: { type: "string", valueName: "ADDR", description: `Address to listen on (env APT_OSTREE_HOST; default ${SERVE_DEFAULTS.host})` },
    "tls-dir": { type: "string", valueName: "DIR", description: "Serve HTTPS, MQTT over TLS and WSS with DIR/server.pem and DIR/server.key ('tls init'; env APT_OSTREE_TLS_DIR; default DATA/tls, made on first start)" },
    "insecure-plain": { type: "boolean", description: "Serve plain HTTP, MQTT and WebSocket instead: tokens cross the network in clear (env APT_OSTREE_INSECURE_PLAIN=1)" },
    config: { type: "string", valueName: "FILE", description: "YAML/JSON config file: repo, data, db, httpPort, mqttPort, mqttWsPort, mqttUrl, mqttDynsec, brokerRedis, repoUrl, host, autoAccept, enrollmentSecretFile, adminToken, signingKey, tlsDir, insecurePlain, limits (docs/server.md; env APT_OSTREE_SERVER_CONFIG)" },
  },
  notes: [
    "Precedence: flags, then environment, then the config file, then defaults.",
    "The admin API (/api/v1) needs 'Authorization: Bearer <token>': APT_OSTREE_ADMIN_TOKEN or adminToken in the",
    "config file; without either, a token is generated on first start and kept in DATA/admin-token (0600).",
    "Devices connect over MQTT with their id and a signed token; unknown ones wait as pending until",
    "POST /api/v1/devices/{id}/accept, or are admitted at once when preauthorized with their key (device preauthorize)",
    "or, with --auto-accept, when their token proves the fleet enrollment secret. With --mqtt-url the broker authenticates devices and",
    "enforces topic ACLs (docs/mosquitto/): devices enroll over HTTPS (POST /api/v1/enroll) for a client certificate,",
    "or, with a broker that authenticates them otherwise, by publishing their signed token on devices/<id>/hello.",
  ],
  async run({ options, io }) {
    const configPath = options.config ?? io.env.APT_OSTREE_SERVER_CONFIG;
    const file: ConfigFile = configPath ? await readConfigFile(resolve(configPath)) : {};
    const settings = resolveServeSettings(
      { repo: options.repo, data: options.data, httpPort: options["http-port"], mqttPort: options["mqtt-port"], mqttWsPort: options["mqtt-ws-port"], mqttUrl: options["mqtt-url"], mqttDynsec: options["mqtt-dynsec"], db: options.db, brokerRedis: options["broker-redis"], repoUrl: options["repo-url"], host: options.host, autoAccept: options["auto-accept"], enrollmentSecretFile: options["enrollment-secret-file"], signingKey: options.key, tlsDir: options["tls-dir"], insecurePlain: options["insecure-plain"] },
      io.env,
      file,
    );
    const log = createLogger({ name: "serve" });
    const server = await startServer({ ...settings, repo: resolve(settings.repo), data: resolve(settings.data) }, log);
    const secure = server.caFile !== null ? "s" : "";
    io.stdout.write(`Serving ${resolve(settings.repo)} on http${secure}://${settings.host}:${server.httpPort}/repo/\n`);
    io.stdout.write(server.mqttPort === null ? `MQTT through ${redactUrl(settings.mqttUrl!)}\n` : `MQTT on mqtt${secure}://${settings.host}:${server.mqttPort}${server.mqttWsPort ? ` and ws${secure}://${settings.host}:${server.mqttWsPort}/mqtt` : ""}\n`);
    if (server.adminTokenFile) io.stdout.write(`Admin token: ${server.adminTokenFile}\n`);
    io.stdout.write(server.caFile !== null ? `CA: ${server.caFile} (devices pin it: image build --ca; the CLI: --ca or APT_OSTREE_CA)\n` : "TLS off (--insecure-plain): tokens and the fleet's traffic cross the network in clear\n");
    await new Promise<void>((done) => {
      const stop = () => void server.close().then(done);
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
    });
  },
});
