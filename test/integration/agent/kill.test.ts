/**
 * apt-ostreed as a real process, killed with SIGKILL in every state an update passes through
 * (idle, downloading, staged, rebooting, verifying, healthy, failed, rolled-back) and started
 * again: it resumes where it was, the update lands exactly once, the boot counter is armed and
 * blessed once, and the server accepts every report (the counter survives the kills). A lock
 * file left by an earlier boot, its pid alive again, does not stop the agent starting, and a
 * temporary that an interrupted write left in the state dir is removed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { access, chmod, mkdir, open, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stateFilePath, stateLockPath } from "../../../device/agent/state-file.ts";
import { readDeployments } from "../../../device/sysroot/deployments.ts";
import { signCommand } from "../../../shared/wire/command.ts";
import { manifestPath, signManifest } from "../../../shared/wire/manifest.ts";
import { AgentFixture, REF } from "../../helpers/agent-fixture.ts";
import { AGENT_CLI, DEVICE_CLI } from "../../helpers/cli.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();
let config: string;
let agent: ChildProcess | null = null;
const killedIn: string[] = [];

async function agentState(): Promise<string | null> {
  const text = await readFile(stateFilePath(fixture.settings.stateDir), "utf8").catch(() => null);
  try {
    return text ? (JSON.parse(text).state.name as string) : null;
  } catch {
    return null;
  }
}

async function startProcess(): Promise<void> {
  const log = await open(join(fixture.dir, "agent.log"), "a");
  agent = spawn(process.execPath, [AGENT_CLI, "--config", config], { stdio: ["ignore", log.fd, log.fd] });
  agent.once("exit", () => void log.close());
}

async function kill9(): Promise<void> {
  const child = agent!;
  agent = null;
  if (child.exitCode === null) {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }
}

/** Waits (polling fast) until the persisted state is `name`, kills the agent there, starts it again. */
async function killIn(name: string, ms = 60_000): Promise<void> {
  await until(async () => (await agentState()) === name, `the agent to be ${name}`, ms);
  await kill9();
  killedIn.push(name);
  await startProcess();
}

beforeAll(async () => {
  await fixture.setUp("agent-kill");
  // The reboot command writes the pid of the process that ran it (the agent, or the CLI working
  // while no agent answers), so the restarted agent's own request is told apart from an earlier one.
  const rebootCommand = ["sh", "-c", 'echo "$PPID" > "$0"', fixture.rebootFlag];
  fixture.settings = { ...fixture.settings, rebootStrategy: "command", serverReachTimeoutSeconds: 30, rebootCommand };
  config = await fixture.writeConfig();
  await mkdir(join(fixture.settings.healthDir, "required"), { recursive: true });
  const slowCheck = join(fixture.settings.healthDir, "required", "slow.sh");
  await writeFile(slowCheck, "#!/bin/sh\nsleep 2\necho fine\n");
  await chmod(slowCheck, 0o755);
  await startProcess();
  await until(async () => (await fixture.device())?.booted?.version === "1", "the agent process to report v1", 30_000);
}, 90_000);

afterAll(async () => {
  await kill9().catch(() => undefined);
  await fixture.tearDown();
});

describe("apt-ostreed killed with -9 in every state", () => {
  it("resumes each time and lands v2 exactly once", async () => {
    // A heavier payload keeps the agent in "downloading" (fetch, apply, deploy) long enough to be killed there.
    await killIn("idle");
    const v2 = await fixture.publishVersion(2, { payloadBytes: 20_000_000 });
    const { json } = await fixture.api("rollouts", { ref: REF, select: { devices: ["dev-1"] }, waves: "100%", waveDelay: "0s", waveTimeout: "10m" });
    await killIn("downloading", 30_000);
    await killIn("staged", 120_000);
    // The reboot strategy is "command": the operator asks for it.
    const reboot = await execa(process.execPath, [DEVICE_CLI, "upgrade", "--reboot", "--config", config], { reject: false });
    expect(reboot.exitCode, reboot.stderr).toBe(0);
    await killIn("rebooting");
    // Restarted in the same boot, it asks for the reboot again instead of calling it a fallback.
    const restarted = String(agent!.pid);
    await until(async () => (await readFile(fixture.rebootFlag, "utf8").catch(() => "")).trim() === restarted, "the restarted agent to ask for the reboot");
    await rm(fixture.rebootFlag);
    await kill9();
    // As a power loss leaves it: the lock file stays under the state dir, and the next boot
    // hands its pid to another process (here, this test's own). It names the earlier boot.
    const lockFile = stateLockPath(fixture.settings.stateDir);
    const [, lockBoot] = (await readFile(lockFile, "utf8")).trim().split(" ");
    expect(lockBoot).toBe((await readFile(fixture.disk.bootIdFile, "utf8")).trim());
    await writeFile(lockFile, `${process.pid} ${lockBoot}\n`);
    // ...and a state file's temporary, as a power loss between write and rename leaves it.
    const leftover = join(fixture.settings.stateDir, ".state.json.tmp-4242-0badc0de");
    await writeFile(leftover, '{"state":');
    await fixture.disk.boot();
    await startProcess();
    await until(() => access(leftover).then(() => false, () => true), "the leftover temporary to be removed");
    await killIn("verifying");
    await killIn("healthy", 60_000);
    await until(async () => ((await fixture.api(`rollouts/${json.rollout.id}`)).json.rollout.progress.state === "completed" ? true : null), "the rollout to complete", 30_000);
    expect(killedIn).toEqual(["idle", "downloading", "staged", "rebooting", "verifying", "healthy"]);
    const deployments = await readDeployments({ sysroot: fixture.disk.sysroot, rootDir: fixture.disk.rootDir });
    expect(deployments.filter((d) => d.checksum === v2)).toHaveLength(1);
    expect(deployments[0]).toMatchObject({ checksum: v2, booted: true });
    expect(fixture.disk.bootLog.filter((line) => line.startsWith("3 ") || line.endsWith(" 2"))).toHaveLength(1);
    expect((await fixture.disk.readEnv())?.boot_counter).toBeUndefined();
    expect(await fixture.device()).toMatchObject({ state: "healthy", booted: { version: "2" } });
    const rejected = (await (await fetch(`http://127.0.0.1:${fixture.server.httpPort}/metrics`)).text()).match(/aptostree_mqtt_reports_total\{outcome="replay"\} (\d+)/);
    expect(rejected).toBeNull();
  }, 300_000);

  it("keeps a failed outcome across a kill and reports it again", async () => {
    const unsigned = await fixture.publishVersion(3, { publish: false });
    const published = JSON.parse(await readFile(join(fixture.repo, manifestPath("stable", REF)), "utf8")).manifest;
    const command = signCommand({ type: "update", id: "r-unsigned", device: "dev-1", issued: new Date().toISOString(), manifest: signManifest({ ...published, commit: unsigned, version: "3", sequence: 3, deltas: [] }, [fixture.key]) }, [fixture.key]);
    await fixture.server.broker.publish("apt-ostree/devices/dev-1/cmd", command, true);
    await killIn("failed", 60_000);
    await until(async () => ((await fixture.events()).filter((e) => e.report?.state === "failed" && e.report.command === "r-unsigned").length >= 2 ? true : null), "the failed outcome reported again after the restart", 30_000);
    expect(await agentState()).toBe("failed");
  }, 120_000);

  it("still makes a rollback permanent when killed right after it concluded one", async () => {
    const failing = join(fixture.settings.healthDir, "required", "app.sh");
    await writeFile(failing, "#!/bin/sh\necho 'app: not answering'\nexit 1\n");
    await chmod(failing, 0o755);
    const v4 = await fixture.publishVersion(4);
    await fixture.api("rollouts", { ref: REF, select: { devices: ["dev-1"] }, waves: "100%", waveDelay: "0s", waveTimeout: "10m" });
    await until(async () => (await agentState()) === "staged", "v4 to be staged", 60_000);
    expect((await execa(process.execPath, [DEVICE_CLI, "upgrade", "--reboot", "--config", config], { reject: false })).exitCode).toBe(0);
    for (let boot = 0; boot < 3; boot++) {
      // Two tries of v4, each failing its check and asking for a reboot; the third boot falls back.
      await until(() => access(fixture.rebootFlag).then(() => true, () => false), "a reboot request", 60_000);
      await rm(fixture.rebootFlag);
      await kill9();
      await fixture.disk.boot();
      await startProcess();
    }
    await killIn("rolled-back", 60_000);
    await until(async () => ((await fixture.device()).state === "rolled-back" ? true : null), "the rolled-back report", 30_000);
    const deployments = await readDeployments({ sysroot: fixture.disk.sysroot, rootDir: fixture.disk.rootDir });
    await until(async () => !(await readDeployments({ sysroot: fixture.disk.sysroot, rootDir: fixture.disk.rootDir })).some((d) => d.checksum === v4), "v4 to be undeployed", 30_000);
    expect(deployments.find((d) => d.booted)?.version).toBe("2");
    expect((await fixture.disk.readEnv())?.boot_counter).toBeUndefined();
    await rm(failing);
  }, 240_000);
});
