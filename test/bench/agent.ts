/**
 * The agent benchmark (`npm run bench -- agent`):
 *  1. overhead: from receiving an update command to "staged" (our delta download, sha256 checks,
 *     apply-offline, signature check, deploy) against the bare `ostree pull` + `ostree admin
 *     deploy` of the same commit on an identical sysroot (target: ratio under 1.10);
 *  2. idle RSS and CPU of the bundled agent, connected and idle, on Debian's Node 18 and on the
 *     host's Node.
 */
import { spawn } from "node:child_process";
import { copyFile, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runOstree } from "../../shared/ostree/exec.ts";
import { signCommand } from "../../shared/wire/command.ts";
import { manifestPath } from "../../shared/wire/manifest.ts";
import { bundleDevice } from "../../device/bundle.ts";
import { AgentFixture, REF } from "../helpers/agent-fixture.ts";
import { ensureNode18Root, spawnInRoot } from "../helpers/debian-node18.ts";
import { createDeviceDisk, OSNAME } from "../helpers/simulated-bootloader.ts";
import { until } from "../helpers/wait.ts";
import { procUsage, type ProcUsage } from "./proc-usage.ts";
import { timed } from "./timed.ts";

const PAYLOADS = [2_000_000, 30_000_000];
/** These 2 cores move a single run by 10-20 %: each case runs this often and the medians count. */
const ROUNDS = 3;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function overhead(payloadBytes: number): Promise<{ agent: number; bare: number }> {
  const fixture = await new AgentFixture().setUp(`bench-overhead-${payloadBytes}`);
  try {
    fixture.settings = { ...fixture.settings, rebootStrategy: "command" };
    const running = await fixture.startAgent();
    await until(async () => (await fixture.device())?.booted?.version === "1", "the agent to report");
    const v2 = await fixture.publishVersion(2, { payloadBytes });
    const baseline = await createDeviceDisk(join(fixture.dir, "baseline"), fixture.repo, REF, fixture.commits.get(1)!);
    const signed = JSON.parse(await readFile(join(fixture.repo, manifestPath("stable", REF)), "utf8"));
    const [, agent] = await timed(async () => {
      await running.agent.onCommand(signCommand({ type: "update", id: "bench", issued: new Date().toISOString(), manifest: signed }, [fixture.key]));
      await running.agent.waitFor((s) => s.name === "staged" || s.name === "failed", 600_000);
    });
    if (running.agent.state.name !== "staged") throw new Error(`the agent ended ${running.agent.state.name}`);
    const repo = join(baseline.sysroot, "ostree", "repo");
    const [, bare] = await timed(async () => {
      await runOstree(["remote", "add", `--repo=${repo}`, "--no-gpg-verify", "bench", `${fixture.settings.server}/repo`]);
      await runOstree(["pull", `--repo=${repo}`, "bench", v2]);
      await runOstree(["admin", "deploy", `--sysroot=${baseline.sysroot}`, `--os=${OSNAME}`, v2]);
    });
    return { agent, bare };
  } finally {
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
    const bare = join(fixture.dir, "bare.mjs");
    const floor = join(fixture.dir, "node-floor.mjs");
    await writeFile(bare, "setInterval(() => undefined, 1e6);\n");
    await copyFile(new URL("./node-floor.mjs", import.meta.url), floor);
    const argv: Record<Program, string[]> = {
      bare: [bare],
      floor: [floor, fixture.dir, String(fixture.server.mqttPort)],
      agent: [join(fixture.dir, "dist", "apt-ostreed.mjs"), "--config", config],
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
  say("### Agent: command to staged, against bare ostree pull + admin deploy");
  say();
  say(`Median of ${ROUNDS} runs each (the runs in brackets); the ratio is of the medians.`);
  say();
  say("| v1 -> v2 payload (random bytes) | agent: command -> staged | bare `ostree pull` + `ostree admin deploy` | ratio (target < 1.10) |");
  say("| --- | --- | --- | --- |");
  for (const payload of PAYLOADS) {
    const runs: Array<{ agent: number; bare: number }> = [];
    for (let round = 0; round < ROUNDS; round++) runs.push(await overhead(payload));
    const agent = median(runs.map((r) => r.agent));
    const bare = median(runs.map((r) => r.bare));
    const each = (pick: (r: { agent: number; bare: number }) => number) => runs.map((r) => pick(r).toFixed(2)).join(" / ");
    say(`| ${(payload / 1e6).toFixed(0)} MB | ${agent.toFixed(2)} s (${each((r) => r.agent)}) | ${bare.toFixed(2)} s (${each((r) => r.bare)}) | **${(agent / bare).toFixed(2)}** |`);
  }
  say();
  say(`### Agent: idle, connected (bundle; RSS after ${SETTLE_SECONDS} s, CPU over the next ${CPU_WINDOW_SECONDS} s)`);
  say();
  say("Bare: a bundled `setInterval`. Floor: test/bench/node-floor.mjs, the same kinds of work with Node's built-ins only.");
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
