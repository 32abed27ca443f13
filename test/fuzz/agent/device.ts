/**
 * The device the agent's campaign attacks: the agent fixture's throwaway sysroot (v2 booted, v3
 * published with a static delta from v2, the real server in front of the repo), `apt-ostreed`
 * as a real process (bin/apt-ostreed.js, its pino lines kept), a hostile mirror as its server and
 * a fuzz broker as its MQTT broker. `ostree` is a wrapper on the agent's PATH that logs every
 * call, so a case can tell whether ostree ever saw a file. `snapshot()` is what must not change.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { createInterface } from "node:readline";
import { askAgent, type ControlAnswer, type ControlRequest } from "../../../device/agent/control-socket.ts";
import { readAgentRecord, type AgentRecord } from "../../../device/agent/state-file.ts";
import { runOstree } from "../../../shared/ostree/exec.ts";
import { DEFAULT_TOPIC_PREFIX, deviceTopic } from "../../../shared/wire/topics.ts";
import { manifestPath, type DeltaFile, type SignedManifest } from "../../../shared/wire/manifest.ts";
import { AgentFixture, DEVICE_ID, REF } from "../../helpers/agent-fixture.ts";
import { AGENT_CLI } from "../../helpers/cli.ts";
import { FuzzBroker } from "./broker.ts";
import { HostileMirror } from "./mirror.ts";

export interface LogEvent {
  seq: number;
  event?: string;
  msg?: string;
  level?: number;
  [field: string]: unknown;
}

/** What a refused input must leave as it was. */
export interface Snapshot {
  refs: string;
  deployments: string;
  objects: number;
  repoConfig: string;
  record: AgentRecord | null;
  /** Files under the agent's download dir, with their sizes. */
  downloads: Record<string, number>;
}

const KEEP_EVENTS = 4000;

export class FuzzDevice {
  readonly fixture = new AgentFixture();
  mirror!: HostileMirror;
  broker!: FuzzBroker;
  child: ChildProcess | null = null;
  /** The published manifest of v3, and the delta files from the booted v2. */
  signedV3!: SignedManifest;
  deltaFiles: Array<{ entry: DeltaFile; bytes: Buffer }> = [];
  readonly events: LogEvent[] = [];
  starts = 0;
  private seq = 0;
  private config = "";
  private ostreeLog = "";

  async setUp(): Promise<void> {
    const f = await this.fixture.setUp("agent-fuzz", { publishUpTo: 3, bootedVersion: 2 });
    this.mirror = new HostileMirror(`http://127.0.0.1:${f.server.httpPort}`);
    await this.mirror.start();
    this.broker = new FuzzBroker(deviceTopic(DEFAULT_TOPIC_PREFIX, DEVICE_ID, "cmd"));
    await this.broker.start();
    this.signedV3 = JSON.parse((await this.mirror.real(manifestPath("stable", REF)))!.toString("utf8")) as SignedManifest;
    const delta = this.signedV3.manifest.deltas.find((d) => d.from === f.commits.get(2))!;
    for (const entry of delta.files) this.deltaFiles.push({ entry, bytes: (await this.mirror.real(entry.path))! });
    const bin = join(f.dir, "ostree-bin");
    this.ostreeLog = join(f.dir, "ostree-calls.log");
    await mkdir(bin, { recursive: true });
    await writeFile(this.ostreeLog, "");
    await writeFile(join(bin, "ostree"), `#!/bin/sh\necho "$*" >> '${this.ostreeLog}'\nexec /usr/bin/ostree "$@"\n`);
    await chmod(join(bin, "ostree"), 0o755);
    f.settings = { ...f.settings, server: this.mirror.url, mqtt: this.broker.url, pollSeconds: 86_400, downloadStallSeconds: 1, serverReachTimeoutSeconds: 5 };
    this.config = await f.writeConfig();
    await this.startAgent();
  }

  get settings() {
    return this.fixture.settings;
  }

  async startAgent(): Promise<void> {
    const child = spawn(process.execPath, [AGENT_CLI, "--config", this.config], {
      env: { ...process.env, PATH: `${join(this.fixture.dir, "ostree-bin")}:${process.env.PATH}`, APT_OSTREE_LOG_LEVEL: "info" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.child = child;
    this.starts++;
    createInterface({ input: child.stderr! }).on("line", (line) => {
      let event: LogEvent;
      try {
        event = { ...(JSON.parse(line) as object), seq: ++this.seq };
      } catch {
        event = { seq: ++this.seq, msg: line.slice(0, 2000) };
      }
      this.events.push(event);
      if (this.events.length > KEEP_EVENTS) this.events.splice(0, KEEP_EVENTS / 2);
    });
    await this.waitFor(() => this.broker.live() !== null, 30_000, "the agent to connect to the broker and subscribe");
  }

  alive(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The agent's resident memory, from /proc. */
  async rssBytes(): Promise<number> {
    const status = await readFile(`/proc/${this.child?.pid}/status`, "utf8").catch(() => "");
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
  }

  /** The last log event's sequence number: a case looks at what came after it. */
  mark(): number {
    return this.seq;
  }

  since(mark: number, predicate: (event: LogEvent) => boolean = () => true): LogEvent[] {
    return this.events.filter((e) => e.seq > mark && predicate(e));
  }

  async waitFor<T>(probe: () => T | null | undefined | false | Promise<T | null | undefined | false>, ms: number, what: string): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = await probe();
      if (value) return value;
      if (!this.alive()) throw new Error(`the agent exited (${this.child?.exitCode ?? this.child?.signalCode}) while waiting for ${what}`);
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /** One control-socket request, answered within `ms`. */
  async ask(request: ControlRequest, ms = 10_000): Promise<ControlAnswer> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer to ${request.op} within ${ms} ms`)), ms)));
    try {
      const answer = await Promise.race([askAgent(this.settings.socket, request), timeout]);
      if (!answer) throw new Error("nothing listens on the control socket");
      return answer;
    } finally {
      clearTimeout(timer);
    }
  }

  async record(): Promise<AgentRecord | null> {
    return readAgentRecord(this.settings.stateDir).catch(() => null);
  }

  async ostreeCalls(): Promise<string[]> {
    return (await readFile(this.ostreeLog, "utf8")).split("\n").filter(Boolean);
  }

  async snapshot(): Promise<Snapshot> {
    const sysroot = this.settings.sysroot;
    const repo = join(sysroot, "ostree", "repo");
    const [refs, deployments, objects, repoConfig, record, downloads] = await Promise.all([
      runOstree(["refs", `--repo=${repo}`]),
      runOstree(["admin", "status", `--sysroot=${sysroot}`]),
      countFiles(join(repo, "objects")),
      readFile(join(repo, "config"), "utf8"),
      readAgentRecord(this.settings.stateDir).catch(() => null),
      filesUnder(join(this.settings.stateDir, "downloads")),
    ]);
    return { refs, deployments, objects, repoConfig, record, downloads };
  }

  async tearDown(): Promise<void> {
    const child = this.child;
    if (child && this.alive()) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
    await this.mirror?.close();
    await this.broker?.close();
    await this.fixture.tearDown();
  }
}

async function countFiles(dir: string): Promise<number> {
  const items = await readdir(dir, { recursive: true, withFileTypes: true });
  return items.filter((item) => item.isFile()).length;
}

export async function filesUnder(dir: string): Promise<Record<string, number>> {
  const items = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  const sizes: Record<string, number> = {};
  for (const item of items) {
    if (!item.isFile()) continue;
    const path = join(item.parentPath ?? item.path, item.name);
    // A part renamed or removed since the listing is not there any more.
    const size = (await stat(path).catch(() => null))?.size;
    if (size !== undefined) sizes[relative(dir, path)] = size;
  }
  return sizes;
}
