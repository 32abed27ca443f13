/**
 * Settings of `serve`: flags, then environment, then the config file, then defaults (first
 * set wins). The config file is YAML or JSON with the same names as the flags, in camelCase.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { AptOstreeError } from "../../shared/errors.ts";
import { DEFAULT_LIMITS, LimitsSchema, type ServerLimits } from "./limits.ts";

export const ConfigFileSchema = z
  .object({
    repo: z.string().min(1),
    data: z.string().min(1),
    httpPort: z.number().int().min(0).max(65535),
    mqttPort: z.number().int().min(0).max(65535),
    mqttWsPort: z.union([z.number().int().min(0).max(65535), z.literal("off")]),
    mqttUrl: z.string().regex(/^(mqtts?|wss?|tcp):\/\//, "must be an mqtt://, mqtts://, ws:// or wss:// URL"),
    mqttDynsec: z.boolean(),
    db: z.string().regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL"),
    repoUrl: z.string().regex(/^https?:\/\/\S+$/, "must be an http:// or https:// URL"),
    brokerRedis: z.string().regex(/^rediss?:\/\//, "must be a redis:// URL"),
    autoAccept: z.boolean(),
    enrollmentSecretFile: z.string().min(1),
    host: z.string().min(1),
    adminToken: z.string().min(16, "adminToken must be at least 16 characters"),
    signingKey: z.string().min(1),
    tlsDir: z.string().min(1),
    insecurePlain: z.boolean(),
    limits: LimitsSchema.partial(),
  })
  .partial()
  .strict();

export type ConfigFile = z.infer<typeof ConfigFileSchema>;

export interface ServeSettings {
  repo: string;
  data: string;
  httpPort: number;
  mqttPort: number;
  /** MQTT over WebSocket (path /mqtt) on this port; null for none. */
  mqttWsPort: number | null;
  /** An external broker to use instead of the embedded one. */
  mqttUrl: string | null;
  /** The fleet store: a postgres:// URL several instances share; null: SQLite in the data dir (fleet.db). */
  db: string | null;
  /** Where devices fetch the repo when a static host or CDN serves it (update commands name it); null: this server's /repo. */
  repoUrl: string | null;
  /** Join the embedded broker to the other instances' through this Redis (redis://host:port/db); null: a broker of its own. */
  brokerRedis: string | null;
  /** Drive that broker's (mosquitto's) dynamic-security plugin from the store: revocation and groups take effect at once (docs/mosquitto/). */
  mqttDynsec: boolean;
  host: string;
  /** Accept unknown devices at their first connection when they prove the enrollment secret. */
  autoAccept: boolean;
  /** The fleet enrollment secret auto-accept checks proofs against; required with autoAccept. */
  enrollmentSecretFile: string | null;
  /** Null when none is configured: the server then keeps a generated one in the data dir. */
  adminToken: string | null;
  /** ed25519 secret key file that signs commands; null: rollouts cannot be created. */
  signingKey: string | null;
  /** Bounds on what clients may send and hold (config file `limits:`; docs/server.md). */
  limits: ServerLimits;
  /** HTTPS, MQTT over TLS and WSS with the files in `dir` (made there first when `create`); null: plain ports (--insecure-plain). */
  tls: { dir: string; create: boolean } | null;
}

export interface ServeFlags {
  repo?: string;
  data?: string;
  httpPort?: string;
  mqttPort?: string;
  mqttWsPort?: string;
  mqttUrl?: string;
  mqttDynsec?: boolean;
  db?: string;
  brokerRedis?: string;
  repoUrl?: string;
  host?: string;
  autoAccept?: boolean;
  enrollmentSecretFile?: string;
  signingKey?: string;
  tlsDir?: string;
  insecurePlain?: boolean;
}

export class ConfigError extends AptOstreeError {
  constructor(message: string) {
    super("E_CONFIG", message);
  }
}

export const SERVE_DEFAULTS = { repo: "/var/lib/apt-ostree-server/repo", data: "/var/lib/apt-ostree-server", httpPort: 8080, mqttPort: 1883, mqttWsPort: 8083, host: "0.0.0.0", autoAccept: false };

export async function readConfigFile(path: string): Promise<ConfigFile> {
  const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new ConfigError(`cannot read config file ${path}: ${error.message}`);
  });
  let document: unknown;
  try {
    document = parseYaml(text) ?? {};
  } catch (error) {
    throw new ConfigError(`${path}: invalid YAML/JSON: ${(error as Error).message.split("\n")[0]}`);
  }
  const parsed = ConfigFileSchema.safeParse(document);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.code === "unrecognized_keys" ? issue.keys.join(", ") : issue.path.join(".");
    throw new ConfigError(`${path}: ${key}: ${issue.code === "unrecognized_keys" ? `unknown key (known: ${Object.keys(ConfigFileSchema.shape).join(", ")})` : issue.message}`);
  }
  return parsed.data;
}

/** Pure: merges flags, environment and config file over the defaults. */
export function resolveServeSettings(flags: ServeFlags, env: NodeJS.ProcessEnv, file: ConfigFile): ServeSettings {
  const port = (value: string, source: string): number => {
    const number = Number(value);
    if (!/^\d+$/.test(value) || number > 65535) throw new ConfigError(`${source}: '${value}' is not a TCP port (0-65535)`);
    return number;
  };
  const httpPort = flags.httpPort !== undefined ? port(flags.httpPort, "--http-port")
    : env.APT_OSTREE_HTTP_PORT !== undefined ? port(env.APT_OSTREE_HTTP_PORT, "APT_OSTREE_HTTP_PORT")
    : file.httpPort ?? SERVE_DEFAULTS.httpPort;
  const mqttPort = flags.mqttPort !== undefined ? port(flags.mqttPort, "--mqtt-port")
    : env.APT_OSTREE_MQTT_PORT !== undefined ? port(env.APT_OSTREE_MQTT_PORT, "APT_OSTREE_MQTT_PORT")
    : file.mqttPort ?? SERVE_DEFAULTS.mqttPort;
  const wsText = flags.mqttWsPort ?? env.APT_OSTREE_MQTT_WS_PORT;
  const wsSource = flags.mqttWsPort !== undefined ? "--mqtt-ws-port" : "APT_OSTREE_MQTT_WS_PORT";
  const wsFromFile = file.mqttWsPort === "off" ? null : file.mqttWsPort;
  const mqttWsPort = wsText !== undefined ? (wsText === "off" ? null : port(wsText, wsSource)) : wsFromFile !== undefined ? wsFromFile : SERVE_DEFAULTS.mqttWsPort;
  const autoAccept = flags.autoAccept || (env.APT_OSTREE_AUTO_ACCEPT !== undefined ? env.APT_OSTREE_AUTO_ACCEPT === "1" || env.APT_OSTREE_AUTO_ACCEPT === "true" : file.autoAccept ?? SERVE_DEFAULTS.autoAccept);
  const enrollmentSecretFile = flags.enrollmentSecretFile ?? env.APT_OSTREE_ENROLLMENT_SECRET_FILE ?? file.enrollmentSecretFile ?? null;
  const mqttUrl = flags.mqttUrl ?? env.APT_OSTREE_MQTT_URL ?? file.mqttUrl ?? null;
  const mqttDynsec = flags.mqttDynsec || (env.APT_OSTREE_MQTT_DYNSEC !== undefined ? env.APT_OSTREE_MQTT_DYNSEC === "1" || env.APT_OSTREE_MQTT_DYNSEC === "true" : file.mqttDynsec ?? false);
  if (mqttDynsec && mqttUrl === null) throw new ConfigError("--mqtt-dynsec (APT_OSTREE_MQTT_DYNSEC, mqttDynsec) drives an external mosquitto's dynamic-security plugin: it needs --mqtt-url mqtts://BROKER:8883 too");
  const db = flags.db ?? env.APT_OSTREE_DB ?? file.db ?? null;
  if (db !== null && !/^postgres(ql)?:\/\//.test(db)) throw new ConfigError(`--db (APT_OSTREE_DB, db) must be a postgres:// URL, not '${db.slice(0, 40)}'; leave it out for SQLite in the data dir`);
  const repoUrl = flags.repoUrl ?? env.APT_OSTREE_REPO_URL ?? file.repoUrl ?? null;
  if (repoUrl !== null && !/^https?:\/\/\S+$/.test(repoUrl)) throw new ConfigError(`--repo-url (APT_OSTREE_REPO_URL, repoUrl) must be an http:// or https:// URL, not '${repoUrl.slice(0, 60)}'`);
  const brokerRedis = flags.brokerRedis ?? env.APT_OSTREE_BROKER_REDIS ?? file.brokerRedis ?? null;
  if (brokerRedis !== null && !/^rediss?:\/\//.test(brokerRedis)) throw new ConfigError(`--broker-redis (APT_OSTREE_BROKER_REDIS, brokerRedis) must be a redis:// URL, not '${brokerRedis.slice(0, 40)}'`);
  if (brokerRedis !== null && mqttUrl !== null) throw new ConfigError("--broker-redis joins the embedded brokers of several instances; with --mqtt-url the external broker already joins them: use one or the other");
  const token = env.APT_OSTREE_ADMIN_TOKEN ?? file.adminToken ?? null;
  if (token !== null && token.length < 16) throw new ConfigError("APT_OSTREE_ADMIN_TOKEN must be at least 16 characters");
  return {
    repo: flags.repo ?? env.APT_OSTREE_REPO ?? file.repo ?? SERVE_DEFAULTS.repo,
    data: flags.data ?? env.APT_OSTREE_DATA ?? file.data ?? SERVE_DEFAULTS.data,
    httpPort,
    mqttPort,
    mqttWsPort,
    mqttUrl,
    mqttDynsec,
    db,
    brokerRedis,
    repoUrl: repoUrl?.replace(/\/$/, "") ?? null,
    autoAccept,
    enrollmentSecretFile,
    host: flags.host ?? env.APT_OSTREE_HOST ?? file.host ?? SERVE_DEFAULTS.host,
    adminToken: token,
    signingKey: flags.signingKey ?? env.APT_OSTREE_SIGNING_KEY ?? file.signingKey ?? null,
    limits: { ...DEFAULT_LIMITS, ...file.limits },
    tls: resolveTls(flags, env, file),
  };
}

/**
 * TLS or plain ports: the first source (flags, environment, config file) that names a TLS dir or
 * asks for plain ports decides; naming both in one source is an error. Neither anywhere: TLS
 * with DATA/tls, made on first start.
 */
function resolveTls(flags: ServeFlags, env: NodeJS.ProcessEnv, file: ConfigFile): ServeSettings["tls"] {
  const envPlain = env.APT_OSTREE_INSECURE_PLAIN === "1" || env.APT_OSTREE_INSECURE_PLAIN === "true";
  const sources = [
    { tlsDir: flags.tlsDir, plain: flags.insecurePlain === true, names: "--tls-dir and --insecure-plain" },
    { tlsDir: env.APT_OSTREE_TLS_DIR || undefined, plain: envPlain, names: "APT_OSTREE_TLS_DIR and APT_OSTREE_INSECURE_PLAIN" },
    { tlsDir: file.tlsDir, plain: file.insecurePlain === true, names: "tlsDir and insecurePlain in the config file" },
  ];
  for (const source of sources) {
    if (source.tlsDir !== undefined && source.plain) throw new ConfigError(`${source.names} contradict each other: serve TLS from a directory, or plain ports, not both`);
    if (source.plain) return null;
    if (source.tlsDir !== undefined) return { dir: source.tlsDir, create: false };
  }
  const data = flags.data ?? env.APT_OSTREE_DATA ?? file.data ?? SERVE_DEFAULTS.data;
  return { dir: join(data, "tls"), create: true };
}
