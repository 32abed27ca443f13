/**
 * The real `apt-ostree-server serve` in its own process, as an operator runs it: hostile-input
 * tests attack it from outside and check that it stays alive, answers and stays within memory.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import { initRepo } from "../../shared/ostree/repo.ts";
import type { ServerLimits } from "../../server/config/limits.ts";
import { SERVER_CLI } from "./cli.ts";
import { autoAcceptSettings } from "./enrollment-secret.ts";
import { freePort } from "./mosquitto.ts";
import { TEST_ADMIN_TOKEN } from "./server-settings.ts";
import { until } from "./wait.ts";

export interface ServeProcessOptions {
  dir: string;
  /** --auto-accept, with the test enrollment secret (enrollment-secret.ts) for devices to prove. */
  autoAccept?: boolean;
  limits?: Partial<ServerLimits>;
  /** A repo to serve; an empty archive repo under `dir` when omitted. */
  repo?: string;
  signingKey?: string;
  /** Serve HTTPS, MQTT over TLS and WSS with this directory's files (`tls init`); plain ports (--insecure-plain) when omitted. */
  tlsDir?: string;
  /** --db: the fleet in this PostgreSQL database. */
  db?: string;
  /** --mqtt-url: this external broker instead of the embedded one. */
  mqttUrl?: string;
  /** --broker-redis: the embedded broker joined to other instances' through this Redis. */
  brokerRedis?: string;
}

export interface ServeProcess {
  httpPort: number;
  mqttPort: number;
  mqttWsPort: number;
  child: ChildProcess;
  /** https://127.0.0.1:port with a TLS dir, http:// otherwise. */
  baseUrl: string;
  /** fetch that trusts the server's CA (the global fetch on plain ports). */
  fetch: typeof fetch;
  /** Exit code or signal once the process ended; null while it runs. */
  exited(): string | null;
  /** Resident memory of the process, from /proc, in bytes. */
  rss(): Promise<number>;
  /** The process's stderr so far (pino lines). */
  log(): string;
  api(path: string, init?: RequestInit): Promise<Response>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  stop(): Promise<void>;
}

export async function startServeProcess(options: ServeProcessOptions): Promise<ServeProcess> {
  const repo = options.repo ?? join(options.dir, "repo");
  if (!options.repo) await initRepo(repo, "archive");
  const [httpPort, mqttPort, mqttWsPort] = [await freePort(), await freePort(), await freePort()];
  const config = join(options.dir, "serve.json");
  await writeFile(config, JSON.stringify({ limits: options.limits ?? {} }));
  const args = [SERVER_CLI, "serve", "--config", config, "--data", join(options.dir, "data"), "--repo", repo, "--host", "127.0.0.1", "--http-port", String(httpPort), "--mqtt-port", String(mqttPort), "--mqtt-ws-port", String(mqttWsPort)];
  if (options.autoAccept) args.push("--auto-accept", "--enrollment-secret-file", (await autoAcceptSettings(options.dir)).enrollmentSecretFile);
  if (options.signingKey) args.push("--key", options.signingKey);
  if (options.db) args.push("--db", options.db);
  if (options.mqttUrl) args.push("--mqtt-url", options.mqttUrl);
  if (options.brokerRedis) args.push("--broker-redis", options.brokerRedis);
  args.push(...(options.tlsDir ? ["--tls-dir", options.tlsDir] : ["--insecure-plain"]));
  const child = spawn(process.execPath, args, { env: { ...process.env, APT_OSTREE_ADMIN_TOKEN: TEST_ADMIN_TOKEN, APT_OSTREE_LOG_LEVEL: "info" }, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (text: string) => {
    stderr = (stderr + text).slice(-2_000_000);
  });
  let exit: string | null = null;
  child.once("exit", (code, signal) => (exit = signal ?? String(code)));
  const base = `${options.tlsDir ? "https" : "http"}://127.0.0.1:${httpPort}`;
  const fetch = options.tlsDir ? trustingFetch(await readFile(join(options.tlsDir, "ca.pem"), "utf8")) : globalThis.fetch;
  const api = (path: string, init: RequestInit = {}) => fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, ...(init.headers as Record<string, string> | undefined) } });
  await until(async () => exit === null && (await fetch(`${base}/healthz`)).ok, "the server to start", 60_000, { detail: () => `exit ${exit}; stderr: ${stderr.slice(-2000)}` });
  return {
    httpPort,
    mqttPort,
    mqttWsPort,
    child,
    baseUrl: base,
    fetch,
    exited: () => exit,
    rss: async () => Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${child.pid}/status`, "utf8"))![1]) * 1024,
    log: () => stderr,
    api,
    metric: async (name, labels = {}) => {
      const text = await (await fetch(`${base}/metrics`)).text();
      const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      let total = 0;
      for (const line of text.split("\n")) {
        const match = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
        if (!match || match[1] !== name) continue;
        if (wanted.every((pair) => (match[2] ?? "").includes(pair))) total += Number(match[3]);
      }
      return total;
    },
    stop: async () => {
      if (exit !== null) return;
      const done = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 10_000))]);
      if (exit === null) child.kill("SIGKILL");
    },
  };
}

/** undici's fetch with a pool that trusts only `ca` (PEM). */
export function trustingFetch(ca: string): typeof fetch {
  const dispatcher = new Agent({ connect: { ca } });
  return ((input: string, init: RequestInit = {}) => undiciFetch(input, { ...(init as object), dispatcher })) as unknown as typeof fetch;
}
