/**
 * The agent on a full disk (issue 20, "/var fills up"): its state directory on a real tmpfs that
 * the test fills and grows. A state file that cannot be written holds the agent where the file
 * says, written again every 30 s, without crashing or running the step's effects; an
 * update that does not fit waits for space (reported to the server, no attempt spent, nothing
 * downloaded) and goes on by itself once there is room. A 1 MiB reserve, given back when the disk
 * is full, lets the agent say so even then.
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stateFilePath } from "../../../device/agent/state-file.ts";
import { AgentFixture, DEVICE_ID, REF } from "../../helpers/agent-fixture.ts";
import { until } from "../../helpers/wait.ts";

// A failed state write is tried again after 4 s here (30 s on a device), so the test waits less.
const STATE_WRITE_RETRY_MS = 4_000;
const fixture = new AgentFixture();
fixture.stateWriteRetryMs = STATE_WRITE_RETRY_MS;
const root = process.getuid?.() === 0;
let small = "";

const persistedState = async () => JSON.parse(await readFile(stateFilePath(fixture.settings.stateDir), "utf8")).state;

/** Starts `device`'s agent with its state directory on a fresh tmpfs of `size` (mounting needs root, which the test machine has); returns the tmpfs. */
async function startOnTmpfs(device: AgentFixture, name: string, size: string): Promise<string> {
  await device.setUp(name, { publishUpTo: 2 });
  device.keepLogs = true;
  const tmpfs = join(device.dir, "small");
  await mkdir(tmpfs);
  await execa("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", tmpfs]);
  device.settings = { ...device.settings, stateDir: join(tmpfs, "agent") };
  await device.startAgent();
  await until(async () => (await device.device())?.online, "the device online", 30_000);
  return tmpfs;
}

async function stopOnTmpfs(device: AgentFixture, tmpfs: string): Promise<void> {
  await device.stopAgent();
  if (tmpfs) await execa("umount", [tmpfs]).catch(() => undefined);
  await device.tearDown();
}

/** Fills the tmpfs: not a byte left. */
const fill = (tmpfs: string) => execa("sh", ["-c", `cat /dev/zero > ${join(tmpfs, "filler")} 2>/dev/null || true`]);

beforeAll(async () => {
  if (root) small = await startOnTmpfs(fixture, "agent-disk-full", "2m");
}, 60_000);

afterAll(() => stopOnTmpfs(fixture, small));

describe.runIf(root)("the agent on a full disk", () => {
  it("does not move on when its state file cannot be written, then waits for space, then updates", async () => {
    // Full: not a byte left for the state file.
    await fill(small);
    const { json } = await fixture.api("rollouts", { ref: REF, select: { devices: [DEVICE_ID] }, waves: "100%", waveDelay: "0s", waveTimeout: "10m" });
    const command = json.rollout.id;
    await until(() => fixture.logged("agent.state.write-failed").length > 0, "the failed state write", 30_000);
    expect(fixture.logged("agent.state.write-failed")[0]).toMatchObject({ what: `command ${command}`, tries: 1 });
    expect((await persistedState()).name).toBe("idle");
    expect(fixture.agent!.agent.state.name).toBe("idle");
    expect(await readdir(join(small, "agent"))).not.toContain("downloads");

    // Room for the state file, not for the update: the command is taken again and the update waits.
    await rm(join(small, "filler"));
    await until(async () => (await persistedState()).name === "downloading", "the command taken once written", STATE_WRITE_RETRY_MS + 15_000);
    expect(fixture.logged("agent.state.written")[0]).toMatchObject({ what: `command ${command}`, tries: 2 });
    const waiting = await until(async () => {
      const report = (await fixture.events()).find((e) => e.kind === "report" && e.report.command === command && e.report.error);
      return report?.report;
    }, "a report saying why the update waits", 30_000);
    expect(waiting).toMatchObject({ state: "downloading" });
    expect(waiting.error).toMatch(/not enough space for 2: \d+ MiB free under .*, the update needs \d+ MiB .*waiting for space/);
    const state = await persistedState();
    expect(state).toMatchObject({ name: "downloading", attempt: 1, waiting: { times: 1 } });
    expect(await readdir(join(small, "agent", "downloads")).catch(() => [])).toEqual([]);

    // Room again: the next try (10 s later) stages the update (and asks for the reboot).
    await execa("mount", ["-o", "remount,size=256m", small]);
    await until(async () => ["staged", "rebooting"].includes((await persistedState()).name), "the update staged once there is room", 60_000, {
      detail: async () => `${JSON.stringify(await persistedState()).slice(0, 400)}; ${JSON.stringify(fixture.logs.filter((l) => (l.level as number) >= 40).slice(-4)).slice(0, 1500)}`,
    });
    await until(async () => (await fixture.events()).some((e) => e.kind === "report" && e.report.command === command && e.report.state === "staged"), "the staged report", 10_000);
    expect(fixture.logged("agent.state.write-failed")).toHaveLength(1);
  }, 150_000);
});

describe.runIf(root)("the agent's space reserve", () => {
  const device = new AgentFixture();
  let tmpfs = "";

  beforeAll(async () => {
    // Room for the 1 MiB reserve, made at start when 65 MiB are free.
    tmpfs = await startOnTmpfs(device, "agent-space-reserve", "80m");
  }, 60_000);

  afterAll(() => stopOnTmpfs(device, tmpfs));

  it("is given back on a full disk, so the agent still says why it waits", async () => {
    expect(await readdir(join(tmpfs, "agent"))).toContain("space-reserve");
    await fill(tmpfs);
    const { json } = await device.api("rollouts", { ref: REF, select: { devices: [DEVICE_ID] }, waves: "100%", waveDelay: "0s", waveTimeout: "10m" });
    const command = json.rollout.id;
    // Still full: the reserve given back, the command taken, and why it waits reported.
    const waiting = await until(async () => (await device.events()).find((e) => e.kind === "report" && e.report.command === command && e.report.error)?.report, "a report saying why the update waits, on a full disk", 30_000);
    expect(waiting.error).toMatch(/not enough space for 2: .*waiting for space/);
    expect(device.logged("agent.space-reserve.used")[0]).toMatchObject({ what: `command ${command}` });
    expect(device.logged("agent.state.write-failed")).toEqual([]);
    expect(await readdir(join(tmpfs, "agent"))).not.toContain("space-reserve");
  }, 60_000);
});

describe.runIf(root)("an agent stopped while its state file waits for space", () => {
  const device = new AgentFixture();
  device.stateWriteRetryMs = STATE_WRITE_RETRY_MS;
  let tmpfs = "";

  beforeAll(async () => {
    tmpfs = await startOnTmpfs(device, "agent-stop-held-write", "2m");
  }, 60_000);

  afterAll(() => stopOnTmpfs(device, tmpfs));

  it("gives the write up at once: nothing lands in the state file after the stop", async () => {
    const file = stateFilePath(device.settings.stateDir);
    await fill(tmpfs);
    const before = await readFile(file, "utf8");
    const { json } = await device.api("rollouts", { ref: REF, select: { devices: [DEVICE_ID] }, waves: "100%", waveDelay: "0s", waveTimeout: "10m" });
    await until(() => device.logged("agent.state.write-failed").length > 0, "the failed state write", 30_000);
    expect(device.logged("agent.state.write-failed")[0]).toMatchObject({ what: `command ${json.rollout.id}` });

    // The command's write ends with the stop (it waited in the command queue, which stop does not wait for).
    await device.stopAgent();
    await until(() => device.logged("agent.command.error").length > 0, "the held write given up", 5_000);
    expect(device.logged("agent.command.error")[0]).toMatchObject({ err: expect.objectContaining({ code: "E_AGENT_STOPPED" }) });

    // Room again, past the retry: a write of the stopped agent would land now, behind a next agent's back.
    await rm(join(tmpfs, "filler"));
    await new Promise((resolve) => setTimeout(resolve, STATE_WRITE_RETRY_MS + 3000));
    expect(device.logged("agent.state.written")).toEqual([]);
    expect(await readFile(file, "utf8")).toBe(before);
  }, 90_000);
});
