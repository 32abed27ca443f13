/**
 * One device and its server for agent tests: the real server in-process (HTTP repo, embedded
 * MQTT, rollouts) with a published v1, a throwaway sysroot with `bootedVersion` deployed and a
 * simulated bootloader (simulated-bootloader.ts), and the agent's settings pointing at both.
 */
import { access, chmod, copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { pino } from "pino";
import { silentLogger } from "../../shared/log.ts";
import { initRepo } from "../../shared/ostree/repo.ts";
import { generateKeyPair } from "../../shared/sign/ed25519.ts";
import { formatPublicKey, formatSecretKey } from "../../shared/sign/keys.ts";
import { publish, type PublishKeys } from "../../server/publish/publish.ts";
import { initRoot } from "../../server/keys/root-versions.ts";
import { commandKeyFile, trustPublishKeys } from "../../server/keys/trust-dir.ts";
import { expiryAfterDays } from "../../shared/trust/root-edit.ts";
import { startServer, type RunningServer } from "../../server/serve.ts";
import { initTlsDir } from "../../server/tls/tls-dir.ts";
import { trustingFetch } from "./serve-process.ts";
import { AGENT_DEFAULTS, type AgentSettings } from "../../device/config/settings.ts";
import { runAgent, type RunningAgent } from "../../device/agent/run.ts";
import { testServerSettings } from "./server-settings.ts";
import { autoAcceptSettings } from "./enrollment-secret.ts";
import { commitSyntheticImage } from "./synthetic-image.ts";
import { createDeviceDisk, OSNAME, type SimulatedBootloader } from "./simulated-bootloader.ts";
import { makeTempDir, removeTree } from "./tmp.ts";
import { until } from "./wait.ts";
import { adminApi } from "./admin-api.ts";
import { DEVICE_CLI } from "./cli.ts";

export const REF = "test/bookworm/test-machine/test-image";
export const DEVICE_ID = "dev-1";
const BOOT_HELPERS = fileURLToPath(new URL("../../device/boot/", import.meta.url));

export interface BootUnitsRun {
  /** `apt-ostree boot-check`'s exit status and verdict (apt-ostree-healthcheck.service). */
  check: { exitCode: number; verdict: any };
  /** The helper systemd ran next, and what it printed. */
  next: "bless" | "reboot-on-failure";
  output: string;
}

export class AgentFixture {
  readonly key = generateKeyPair();
  readonly commits = new Map<number, string>();
  dir = "";
  repo = "";
  server!: RunningServer;
  disk!: SimulatedBootloader;
  settings!: AgentSettings;
  agent: RunningAgent | null = null;
  /** With `trust`: the fleet's trust directory (keys init-root); releases and commands are signed by role. */
  trustDir: string | null = null;
  /** Keep the agent's log lines in `logs` (tests that assert on its events), across the restarts of simulated reboots too. */
  keepLogs = false;
  readonly logs: Array<Record<string, unknown>> = [];
  private tlsDir: string | null = null;
  /** With TLS: the CA the server's certificate chains to (the agent's caFile), and a fetch that trusts it. */
  tlsCa: string | null = null;
  private fetch: typeof fetch = globalThis.fetch;
  readonly api = adminApi(() => `${this.tlsCa ? "https" : "http"}://127.0.0.1:${this.server.httpPort}`, () => this.fetch);

  /** The fleet store's PostgreSQL URL; null: SQLite in the server's data dir. */
  db: string | null = null;
  /** `serve --repo-url`: update commands send the device to this static host for the repo. */
  repoUrl: string | null = null;

  /** Publishes versions 1..`publishUpTo`, boots `bootedVersion`; `tls`: the server serves HTTPS and MQTT over TLS with a CA of its own (tls init); `db`: the server keeps the fleet in this PostgreSQL database. */
  async setUp(name: string, options: { publishUpTo?: number; bootedVersion?: number; tls?: boolean; trust?: boolean; db?: string; repoUrl?: string } = {}): Promise<this> {
    this.db = options.db ?? null;
    this.repoUrl = options.repoUrl ?? null;
    this.dir = await makeTempDir(name);
    this.repo = join(this.dir, "repo");
    await initRepo(this.repo, "archive");
    await writeFile(join(this.dir, "server.secret"), formatSecretKey(this.key), { mode: 0o600 });
    if (options.trust) {
      this.trustDir = join(this.dir, "trust");
      await initRoot(this.trustDir, { rootKeys: 1, thresholds: {}, expires: expiryAfterDays(new Date(), 30) });
    }
    for (let version = 1; version <= (options.publishUpTo ?? 1); version++) await this.publishVersion(version);
    const tlsDir = join(this.dir, "tls");
    if (options.tls) {
      this.tlsCa = (await initTlsDir(tlsDir, ["localhost", "127.0.0.1"])).ca;
      this.fetch = trustingFetch(await readFile(this.tlsCa, "utf8"));
    }
    this.tlsDir = options.tls ? tlsDir : null;
    await this.startServer();
    const device = join(this.dir, "device");
    this.disk = await createDeviceDisk(device, this.repo, REF, this.commits.get(options.bootedVersion ?? 1)!);
    await mkdir(join(device, "keys.d"), { recursive: true });
    await writeFile(join(device, "keys.d", "server.pub"), formatPublicKey(this.key.publicKey));
    // With a trust directory the device ships its root (as compose --trust-root does); without one it pins keys.d.
    if (this.trustDir) await copyFile(join(this.trustDir, "root.json"), join(device, "root.json"));
    this.settings = {
      ...AGENT_DEFAULTS,
      // With TLS the server is named as a DNS name and the broker as an address: both kinds of SAN are checked.
      server: `${this.tlsCa ? "https://localhost" : "http://127.0.0.1"}:${this.server.httpPort}`,
      mqtt: `${this.tlsCa ? "mqtts" : "mqtt"}://127.0.0.1:${this.server.mqttPort}`,
      ...(this.tlsCa ? { caFile: this.tlsCa } : {}),
      deviceId: DEVICE_ID,
      groups: ["lab"],
      enrollmentSecretFile: join(this.dir, "enrollment-secret"),
      ref: REF,
      osname: OSNAME,
      sysroot: this.disk.sysroot,
      stateDir: join(device, "state", "agent"),
      keysDir: join(device, "keys.d"),
      rootFile: join(device, "root.json"),
      ostreeKeysFile: join(device, "ostree", "trusted.ed25519.d", "apt-ostree-image"),
      healthDir: join(device, "health.d"),
      rootDir: this.disk.rootDir,
      socket: join(device, "state", "agent.sock"),
      bootIdFile: this.disk.bootIdFile,
      grubenv: this.disk.grubenv,
      bootTries: 2,
      rebootCommand: ["touch", this.rebootFlag],
      stage: false,
      checkSystemdUnits: false,
      serverReachTimeoutSeconds: 10,
    };
    return this;
  }

  /** The settings as an agent.yaml (JSON is YAML), for the CLI and the agent run as processes. */
  async writeConfig(): Promise<string> {
    const file = join(this.dir, "device", "agent.yaml");
    await writeFile(file, JSON.stringify(this.settings, null, 1));
    return file;
  }

  get rebootFlag(): string {
    return join(this.dir, "reboot-requested");
  }

  async publishVersion(version: number, options: { publish?: boolean; payloadBytes?: number } = {}): Promise<string> {
    const commit = await commitSyntheticImage(this.repo, REF, this.dir, { version: String(version), sequence: version, payloadBytes: options.payloadBytes ?? 200_000, payloadSeed: `v${version}` });
    this.commits.set(version, commit);
    if (options.publish !== false) await publish({ repo: this.repo, ref: REF, ...(await this.publishKeys()), channel: "stable", deltaDepth: 2, expiresInSeconds: 86400, log: silentLogger() });
    return commit;
  }

  /** The keys releases are signed with: the trust directory's roles, or the fixture's one legacy key. */
  async publishKeys(): Promise<PublishKeys> {
    return this.trustDir ? trustPublishKeys(this.trustDir) : { key: this.key };
  }

  /** The server, on the ports it had before if it ran already (the device's settings name them); with a trust directory, signing with its current command key. */
  async startServer(): Promise<void> {
    const signingKey = this.trustDir ? await commandKeyFile(this.trustDir) : join(this.dir, "server.secret");
    const ports = this.server ? { httpPort: this.server.httpPort, mqttPort: this.server.mqttPort! } : {};
    this.server = await startServer(
      { ...testServerSettings({ repo: this.repo, data: join(this.dir, "data"), ...(await autoAcceptSettings(this.dir)), signingKey, tls: this.tlsDir ? { dir: this.tlsDir, create: false } : null, db: this.db, repoUrl: this.repoUrl, ...ports }), tickMilliseconds: 100 },
      silentLogger(),
    );
  }

  async restartServer(): Promise<void> {
    await this.server.close();
    await this.startServer();
  }

  /** How long a failed state write waits before its next try (the agent's 30 s unless set). */
  stateWriteRetryMs: number | undefined = undefined;

  /** Starts the agent; with `keepLogs`, what it logs from then on (debug and up) goes to `logs`, cleared at each start. */
  async startAgent(): Promise<RunningAgent> {
    this.logs.length = 0;
    const log = this.keepLogs ? pino({ level: "debug" }, { write: (line: string) => void this.logs.push(JSON.parse(line)) }) : silentLogger();
    this.agent = await runAgent(this.settings, log, this.stateWriteRetryMs === undefined ? {} : { stateWriteRetryMs: this.stateWriteRetryMs });
    return this.agent;
  }

  /** The kept log lines of one event. */
  logged(event: string): Array<Record<string, unknown>> {
    return this.logs.filter((line) => line.event === event);
  }

  async stopAgent(): Promise<void> {
    await this.agent?.stop();
    this.agent = null;
  }

  /** Waits for the agent to ask for a reboot, then powers the simulated device off and on again. */
  async rebootWhenAsked(): Promise<void> {
    await until(() => access(this.rebootFlag).then(() => true, () => false), "the agent to ask for a reboot", 60_000);
    await rm(this.rebootFlag);
    await this.stopAgent();
    await this.disk.boot();
    await this.startAgent();
  }

  /** What apt-ostree-healthcheck.service runs: the running agent's verdict on this boot. */
  async bootCheck(): Promise<{ exitCode: number; verdict: any }> {
    const result = await execa(process.execPath, [DEVICE_CLI, "boot-check", "--config", await this.writeConfig(), "--timeout", "60s", "--json"], { reject: false });
    return { exitCode: result.exitCode ?? -1, verdict: JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "null") };
  }

  /**
   * What systemd does after the agent on a boot of the image (docs/boot.md): the health check,
   * then the image's shell helper: bless after boot-complete.target, or reboot-on-failure (whose
   * `systemctl reboot` asks this fixture for a reboot, as the agent's reboot command does).
   */
  async runBootUnits(): Promise<BootUnitsRun> {
    const check = await this.bootCheck();
    const bin = join(this.dir, "systemctl-bin");
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, "systemctl"), `#!/bin/sh\n[ "$1" = reboot ] && touch '${this.rebootFlag}'\n`);
    await chmod(join(bin, "systemctl"), 0o755);
    const next = check.exitCode === 0 ? "bless" : "reboot-on-failure";
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, APT_OSTREE_GRUBENV: this.disk.grubenv, APT_OSTREE_KMSG: join(this.dir, "kmsg") };
    const result = await execa(join(BOOT_HELPERS, next), [], { env });
    return { check, next, output: result.stdout };
  }

  async device(): Promise<any> {
    return (await this.api(`devices/${DEVICE_ID}`)).json.device;
  }

  async events(): Promise<Array<{ kind: string; report: any }>> {
    return (await this.api(`devices/${DEVICE_ID}`)).json.events;
  }

  async tearDown(): Promise<void> {
    await this.stopAgent();
    await this.server?.close();
    if (this.dir) await removeTree(this.dir);
  }
}
