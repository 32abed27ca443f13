/** The real `serve` for power-cut trials, on the fixed ports the disk names, over TLS. */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { commandKeyFile } from "../../../server/keys/trust-dir.ts";
import { adminApi } from "../../helpers/admin-api.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { trustingFetch } from "../../helpers/serve-process.ts";
import { TEST_ADMIN_TOKEN } from "../../helpers/server-settings.ts";
import { until } from "../../helpers/wait.ts";

export interface SoakServerOptions {
  repo: string;
  data: string;
  tlsDir: string;
  trust: string;
  httpPort: number;
  mqttPort: number;
  enrollmentSecretFile: string;
}

export class SoakServer {
  private stderr = "";
  private exit: string | null = null;

  private constructor(
    private readonly child: ChildProcess,
    private readonly call: ReturnType<typeof adminApi>,
  ) {
    child.stderr!.setEncoding("utf8").on("data", (text: string) => (this.stderr = (this.stderr + text).slice(-1_000_000)));
    child.once("exit", (code, signal) => (this.exit = signal ?? String(code)));
  }

  static async start(options: SoakServerOptions): Promise<SoakServer> {
    const child = spawn(process.execPath, [SERVER_CLI, "serve", "--repo", options.repo, "--data", options.data, "--host", "127.0.0.1", "--http-port", String(options.httpPort), "--mqtt-port", String(options.mqttPort), "--mqtt-ws-port", "off", "--tls-dir", options.tlsDir, "--auto-accept", "--enrollment-secret-file", options.enrollmentSecretFile, "--key", await commandKeyFile(options.trust)], {
      env: { ...process.env, APT_OSTREE_ADMIN_TOKEN: TEST_ADMIN_TOKEN, APT_OSTREE_LOG_LEVEL: "info" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    const fetcher = trustingFetch(await readFile(join(options.tlsDir, "ca.pem"), "utf8"));
    const server = new SoakServer(child, adminApi(() => `https://127.0.0.1:${options.httpPort}`, () => fetcher));
    try {
      await until(async () => server.exit === null && (await fetcher(`https://127.0.0.1:${options.httpPort}/healthz`)).ok, "serve to start", 60_000, { intervalMs: 200, detail: () => `exit ${server.exit}; ${server.stderr.slice(-2000)}` });
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  /** GET without a body, POST with one; a status of 400 or more throws with the answer. */
  async api(path: string, body?: unknown): Promise<any> {
    const { status, json } = await this.call(path, body);
    if (status >= 400) throw new Error(`${path}: ${status} ${JSON.stringify(json)}`);
    return json;
  }

  log(): string {
    return this.stderr;
  }

  /** Keeps an earlier process's log ahead of this one's (a restart on the same data). */
  prependLog(earlier: string): void {
    this.stderr = `${earlier}\n--- serve restarted ---\n${this.stderr}`.slice(-1_000_000);
  }

  /** SIGKILL: the process ends with no shutdown of any kind. */
  async kill(): Promise<void> {
    if (this.exit !== null) return;
    const done = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGKILL");
    await done;
  }

  async stop(): Promise<void> {
    if (this.exit !== null) return;
    const done = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGTERM");
    await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    if (this.exit === null) this.child.kill("SIGKILL");
  }
}
