/**
 * The agent benchmark (`npm run bench -- agent`):
 *  1. overhead: from the server publishing an update command to the bundled agent (its own
 *     process, as on a device) until the server holds its "staged" report (command check, delta
 *     download with sha256 checks, apply-offline, signature check, deploy, the report) against
 *     the bare `ostree pull` + `ostree admin deploy` of the same commit on an identical sysroot
 *     (target: ratio under 1.10);
 *  2. idle RSS and CPU of the bundled agent, connected and idle, on Debian's Node 18 and on the
 *     host's Node.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { copyFile, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runOstree } from "../../shared/ostree/exec.ts";
import { signCommand } from "../../shared/wire/command.ts";
import { manifestPath } from "../../shared/wire/manifest.ts";
import { AGENT_BUNDLE, bundleDevice } from "../../device/bundle.ts";
import { DEFAULT_TOPIC_PREFIX, deviceTopic } from "../../shared/wire/topics.ts";
import { AgentFixture, DEVICE_ID, REF } from "../helpers/agent-fixture.ts";
import { ensureNode18Root, spawnInRoot } from "../helpers/debian-node18.ts";
import { createDeviceDisk, OSNAME } from "../helpers/simulated-bootloader.ts";
import { until } from "../helpers/wait.ts";
import { procUsage, type ProcUsage } from "./proc-usage.ts";
import { makeTempDir, removeTree } from "../helpers/tmp.ts";
import { percentile } from "./stats.ts";
import { timed } from "./timed.ts";

const PAYLOADS = [2_000_000, 30_000_000];
/** These 2 cores move a single run by 10-20 %: each case runs this often and the medians count. */
const ROUNDS = 5;

const median = (values: number[]) => percentile([...values].sort((a, b) => a - b), 50);

async function warmServer(url: string): Promise<void> {
  for (let i = 0; i < 20; i++) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    await response.arrayBuffer();
  }
}

/** Pids whose parent is `pid` (the agent's ostree runs). */
async function childrenOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    // Field 4 (ppid) follows the command name, which is in parentheses and may hold spaces.
    if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) found.push(Number(entry));
  }
  return found;
}

/** Lets the agent finish what follows "staged" (its check of the deployment list), then stops it. */
async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise((resolve) => setTimeout(resolve, 300));
  await until(async () => (await childrenOf(child.pid!)).length === 0, "the agent's programs to end", 10_000, { intervalMs: 20 });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}

/** The server's record of the device, read straight from its store. */
async function deviceState(fixture: AgentFixture): Promise<string | null> {
  return (await fixture.server.store.getDevice(DEVICE_ID))?.state ?? null;
}

/**
 * Resolves the moment the server's store records a report in one of `states`: the store's
 * recordReport is wrapped for the run, so the figure has neither polling in it nor its cost.
 */
function reportRecorded(fixture: AgentFixture, states: string[]): Promise<void> {
  const store = fixture.server.store;
  const record = store.recordReport.bind(store);
  return new Promise((resolve) => {
    store.recordReport = async (report, now) => {
      const taken = await record(report, now);
      if (report.deviceId !== DEVICE_ID || !states.includes(report.state)) return taken;
      store.recordReport = record;
      resolve();
      return taken;
    };
  });
}

async function overhead(payloadBytes: number, agentBundle: string): Promise<{ agent: number; bare: number }> {
  const fixture = await new AgentFixture().setUp(`bench-overhead-${payloadBytes}`);
  let child: ChildProcess | null = null;
  try {
    fixture.settings = { ...fixture.settings, rebootStrategy: "command" };
    child = spawn("node", [agentBundle, "--config", await fixture.writeConfig()], { stdio: "ignore" });
    await until(async () => (await fixture.device())?.booted?.version === "1", "the bundled agent to report", 60_000);
    // A server serves many devices: it is warm for both runs, not cold for whichever goes first.
    await warmServer(`${fixture.settings.server}/repo/config`);
    const v2 = await fixture.publishVersion(2, { payloadBytes });
    const baseline = await createDeviceDisk(join(fixture.dir, "baseline"), fixture.repo, REF, fixture.commits.get(1)!);
    const signed = JSON.parse(await readFile(join(fixture.repo, manifestPath("stable", REF)), "utf8"));
    const command = signCommand({ type: "update", id: "bench", device: DEVICE_ID, issued: new Date().toISOString(), manifest: signed }, [fixture.key]);
    const settled = reportRecorded(fixture, ["staged", "failed"]);
    const [, agent] = await timed(async () => {
      await fixture.server.broker.publish(deviceTopic(DEFAULT_TOPIC_PREFIX, DEVICE_ID, "cmd"), command);
      await settled;
    });
    const ended = await deviceState(fixture);
    if (ended !== "staged") throw new Error(`the agent ended ${ended}`);
    // The bare run gets the machine to itself, as the agent had.
    await stopProcess(child);
    const repo = join(baseline.sysroot, "ostree", "repo");
    const [, bare] = await timed(async () => {
      await runOstree(["remote", "add", `--repo=${repo}`, "--no-gpg-verify", "bench", `${fixture.settings.server}/repo`]);
      await runOstree(["pull", `--repo=${repo}`, "bench", v2]);
      await runOstree(["admin", "deploy", `--sysroot=${baseline.sysroot}`, `--os=${OSNAME}`, v2]);
    });
    return { agent, bare };
  } finally {
    if (child) await stopProcess(child);
    await fixture.tearDown();
  }
}

/** The pid of the node process whose command line names `script` (under unshare and chroot for the Node 18 root). */
async function pidOf(script: string): Promise<number> {
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.startsWith("node\0") && cmdline.includes(script)) return Number(entry);
  }
  throw new Error(`no node process runs ${script}`);
}

const RUNTIMES = ["debian-node18", "host"] as const;
type Runtime = (typeof RUNTIMES)[number];
type Program = "bare" | "floor" | "agent";
const SETTLE_SECONDS = 10;
const CPU_WINDOW_SECONDS = 30;

/** RSS after settling (and the agent's CPU over a window) of: bare Node, the built-ins floor, the bundled agent. */
export async function idle(runtime: Runtime): Promise<Record<Program, ProcUsage & { cpuPercent: number }>> {
  const fixture = await new AgentFixture().setUp(`bench-idle-${runtime}`);
  try {
    const config = await fixture.writeConfig();
    await bundleDevice(join(fixture.dir, "dist"));
    const bare = join(fixture.dir, "bare.cjs");
    const floor = join(fixture.dir, "node-floor.cjs");
    await writeFile(bare, "setInterval(() => undefined, 1e6);\n");
    await copyFile(new URL("./node-floor.cjs", import.meta.url), floor);
    const argv: Record<Program, string[]> = {
      bare: [bare],
      floor: [floor, fixture.dir, String(fixture.server.mqttPort)],
      agent: [join(fixture.dir, "dist", AGENT_BUNDLE), "--config", config],
    };
    const root = runtime === "host" ? null : await ensureNode18Root();
    const start = (args: string[]) => (root === null ? spawn("node", args, { stdio: "ignore" }) : spawnInRoot(root, ["node", ...args]));
    const results = {} as Record<Program, ProcUsage & { cpuPercent: number }>;
    for (const program of ["bare", "floor", "agent"] as const) {
      const child = start(argv[program]);
      try {
        if (program === "agent") await until(async () => (await fixture.device())?.booted?.version === "1", "the bundled agent to report", 60_000);
        await new Promise((resolve) => setTimeout(resolve, SETTLE_SECONDS * 1000));
        const pid = await pidOf(argv[program][0]!);
        const before = await procUsage(pid);
        const window = program === "agent" ? CPU_WINDOW_SECONDS : 1;
        await new Promise((resolve) => setTimeout(resolve, window * 1000));
        const after = await procUsage(pid);
        results[program] = { ...after, cpuPercent: ((after.ticks - before.ticks) / 100 / window) * 100 };
      } finally {
        child.kill("SIGKILL");
      }
    }
    return results;
  } finally {
    await fixture.tearDown();
  }
}

export async function benchAgent(say: (line?: string) => void): Promise<void> {
  await benchAgentOverhead(say);
  await benchAgentIdle(say);
}

export async function benchAgentOverhead(say: (line?: string) => void): Promise<void> {
  say("### Agent: command to staged, against bare ostree pull + admin deploy");
  say();
  say(`The bundled agent in its own process; the time runs from the server publishing the command until its store holds the "staged" report. Median of ${ROUNDS} runs each (the runs in brackets); the ratio is of the medians.`);
  say();
  say("| v1 -> v2 payload (random bytes) | agent: command -> staged | bare `ostree pull` + `ostree admin deploy` | ratio (target < 1.10) |");
  say("| --- | --- | --- | --- |");
  const bundleDir = await makeTempDir("bench-agent-bundle");
  try {
    await bundleDevice(bundleDir);
    for (const payload of PAYLOADS) {
      const runs: Array<{ agent: number; bare: number }> = [];
      for (let round = 0; round < ROUNDS; round++) runs.push(await overhead(payload, join(bundleDir, AGENT_BUNDLE)));
      const agent = median(runs.map((r) => r.agent));
      const bare = median(runs.map((r) => r.bare));
      const each = (pick: (r: { agent: number; bare: number }) => number) => runs.map((r) => pick(r).toFixed(2)).join(" / ");
      say(`| ${(payload / 1e6).toFixed(0)} MB | ${agent.toFixed(2)} s (${each((r) => r.agent)}) | ${bare.toFixed(2)} s (${each((r) => r.bare)}) | **${(agent / bare).toFixed(2)}** |`);
    }
  } finally {
    await removeTree(bundleDir);
  }
  say();
}

export async function benchAgentIdle(say: (line?: string) => void): Promise<void> {
  say(`### Agent: idle, connected (bundle; RSS after ${SETTLE_SECONDS} s, CPU over the next ${CPU_WINDOW_SECONDS} s)`);
  say();
  say("Bare: a `setInterval` in a CommonJS file, like the agent's bundle. Floor: test/bench/node-floor.cjs, the same kinds of work with Node's built-ins only.");
  say();
  say("| runtime | bare Node RSS | built-ins floor RSS | apt-ostreed RSS (target < 45 MB) | apt-ostreed private (RssAnon) vs bare | CPU |");
  say("| --- | --- | --- | --- | --- | --- |");
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  for (const runtime of RUNTIMES) {
    const r = await idle(runtime);
    say(`| ${runtime === "host" ? `host Node ${process.version}` : "Debian bookworm nodejs 18"} | ${mib(r.bare.rss)} | ${mib(r.floor.rss)} | **${mib(r.agent.rss)}** | ${mib(r.agent.anon)} vs ${mib(r.bare.anon)} | ${r.agent.cpuPercent.toFixed(2)} % |`);
  }
  say();
}
