/**
 * The agent benchmark (`npm run bench -- agent`):
 *  1. overhead: from receiving an update command to "staged" (our delta download, sha256 checks,
 *     apply-offline, signature check, deploy) against the bare `ostree pull` + `ostree admin
 *     deploy` of the same commit on an identical sysroot (target: ratio under 1.10);
 *  2. idle RSS and CPU of the bundled agent, connected and idle, on Debian's Node 18 and on the
 *     host's Node.
 */
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { runOstree } from "../../shared/ostree/exec.ts";
import { signCommand } from "../../shared/wire/command.ts";
import { manifestPath } from "../../shared/wire/manifest.ts";
import { bundleDevice } from "../../device/bundle.ts";
import { AgentFixture, REF } from "../helpers/agent-fixture.ts";
import { ensureNode18Root, spawnInRoot } from "../helpers/debian-node18.ts";
import { createDeviceDisk, OSNAME } from "../helpers/simulated-bootloader.ts";
import { until } from "../helpers/wait.ts";
import { timed } from "./timed.ts";

const PAYLOADS = [2_000_000, 30_000_000];

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

async function pidOf(pattern: string): Promise<number> {
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.startsWith("node\0") && cmdline.includes(pattern)) return Number(entry);
  }
  throw new Error(`no process runs ${pattern}`);
}

async function usage(pid: number): Promise<{ rss: number; ticks: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const stat = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
  return { rss: Number(/VmRSS:\s+(\d+)/.exec(status)![1]) * 1024, ticks: Number(stat[11]) + Number(stat[12]) };
}

export async function idle(runtime: "debian-node18" | "host"): Promise<{ rssMiB: number; cpuPercent: number; node: string }> {
  const fixture = await new AgentFixture().setUp(`bench-idle-${runtime}`);
  try {
    const config = await fixture.writeConfig();
    await bundleDevice(join(fixture.dir, "dist"));
    const bundle = join(fixture.dir, "dist", "apt-ostreed.mjs");
    const child = runtime === "host"
      ? spawn("node", [...(process.env.XFLAGS ?? "").split(" ").filter(Boolean), bundle, "--config", config], { stdio: "ignore" })
      : spawnInRoot(await ensureNode18Root(), ["node", bundle, "--config", config]);
    try {
      await until(async () => (await fixture.device())?.booted?.version === "1", "the bundled agent to report", 60_000);
      const pid = await pidOf(bundle);
      const version = (await readFile(`/proc/${pid}/exe`).then(() => "", () => "")) || "";
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      const before = await usage(pid);
      const windowSeconds = 30;
      await new Promise((resolve) => setTimeout(resolve, windowSeconds * 1000));
      const after = await usage(pid);
      return { rssMiB: after.rss / 2 ** 20, cpuPercent: ((after.ticks - before.ticks) / 100 / windowSeconds) * 100, node: version };
    } finally {
      child.kill("SIGKILL");
    }
  } finally {
    await fixture.tearDown();
  }
}

export async function benchAgent(say: (line?: string) => void): Promise<void> {
  say("### Agent: command to staged, against bare ostree pull + admin deploy");
  say();
  say("| v1 -> v2 payload (random bytes) | agent: command -> staged | bare `ostree pull` + `ostree admin deploy` | ratio (target < 1.10) |");
  say("| --- | --- | --- | --- |");
  for (const payload of PAYLOADS) {
    const { agent, bare } = await overhead(payload);
    say(`| ${(payload / 1e6).toFixed(0)} MB | ${agent.toFixed(2)} s | ${bare.toFixed(2)} s | **${(agent / bare).toFixed(2)}** |`);
  }
  say();
  say("### Agent: idle, connected (bundle, 30 s window after 10 s settling)");
  say();
  say("| runtime | RSS | CPU |");
  say("| --- | --- | --- |");
  for (const runtime of ["debian-node18", "host"] as const) {
    const result = await idle(runtime);
    say(`| ${runtime === "host" ? `host Node ${process.version}` : "Debian bookworm nodejs 18"} | ${result.rssMiB.toFixed(1)} MiB | ${result.cpuPercent.toFixed(2)} % |`);
  }
  say();
}
