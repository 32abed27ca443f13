/**
 * The agent's whole cycle without a real boot: the real server (HTTP repo, embedded MQTT, rollouts),
 * the real agent on a throwaway sysroot with the real `ostree`, and a simulated bootloader that
 * follows the grubenv counter the agent arms. v2 rolls out and comes up healthy; v3's required
 * health check fails, the counter runs out, the bootloader falls back to v2 and the agent makes
 * the rollback permanent and reports it with the check's output.
 */
import { access, chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readDeployments } from "../../../device/sysroot/deployments.ts";
import { AgentFixture, REF } from "../../helpers/agent-fixture.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();
const { api } = fixture;

beforeAll(async () => {
  await fixture.setUp("agent-cycle");
  await fixture.startAgent();
  await until(async () => (await fixture.device())?.booted?.version === "1", "dev-1 to enroll and report v1");
}, 60_000);

afterAll(() => fixture.tearDown());

const bootCheck = () => fixture.bootCheck();

describe("the agent's update cycle on a simulated boot", () => {
  it("takes v2 from a rollout: downloads the delta, deploys, reboots into it, reports healthy", async () => {
    const v2 = await fixture.publishVersion(2);
    const { json } = await api("rollouts", { ref: REF, select: { devices: ["dev-1"] }, waves: "100%", waveDelay: "0s", waveTimeout: "5m" });
    await fixture.rebootWhenAsked();
    expect(await fixture.disk.readEnv()).toMatchObject({ boot_counter: "1", boot_success: "0" });
    await until(async () => ((await api(`rollouts/${json.rollout.id}`)).json.rollout.progress.state === "completed" ? true : null), "the rollout to complete", 60_000);
    expect(await fixture.device()).toMatchObject({ state: "healthy", booted: { commit: v2, version: "2" }, rollback: { version: "1" }, pending: null });
    // Blessed: the counter is cleared, so the next boot needs no fallback.
    expect(await fixture.disk.readEnv()).toMatchObject({ boot_success: "1" });
    expect((await fixture.disk.readEnv())?.boot_counter).toBeUndefined();
    expect(await bootCheck()).toEqual({ exitCode: 0, verdict: { verdict: "healthy", version: "2" } });
    const events = (await api("devices/dev-1")).json.events.map((e: { report: { state: string } | null }) => e.report?.state).filter(Boolean).reverse();
    expect(events).toEqual(expect.arrayContaining(["downloading", "staged", "rebooting", "verifying", "healthy"]));
    const downloading = (await api("devices/dev-1")).json.events.find((e: { report: { progress?: { bytes: number; total: number } } | null }) => e.report?.progress?.bytes);
    expect(downloading.report.progress.bytes).toBe(downloading.report.progress.total);
  }, 120_000);

  it("rolls back from v3 whose required health check fails, permanently, and says why", async () => {
    await mkdir(join(fixture.settings.healthDir, "required"), { recursive: true });
    const check = join(fixture.settings.healthDir, "required", "app.sh");
    await writeFile(check, "#!/bin/sh\necho 'app: port 8080 not answering'\nexit 1\n");
    await chmod(check, 0o755);
    const v3 = await fixture.publishVersion(3);
    const { json } = await api("rollouts", { ref: REF, select: { devices: ["dev-1"] }, waves: "100%", waveDelay: "0s", waveTimeout: "5m", maxFailures: "0%" });
    // As in the image: the boot units bless and reboot after a failed check; the agent only judges.
    fixture.settings.bootUnits = true;
    await fixture.rebootWhenAsked(); // into v3, try 1: check fails
    const firstTry = await fixture.runBootUnits();
    expect(firstTry.check.exitCode).toBe(1);
    expect(firstTry.check.verdict).toMatchObject({ verdict: "failed", version: "3", failed: [{ name: "app.sh", kind: "required", ok: false, output: expect.stringContaining("port 8080 not answering") }] });
    expect(firstTry).toMatchObject({ next: "reboot-on-failure", output: expect.stringContaining("rebooting (boot_counter=1)") });
    await fixture.rebootWhenAsked(); // v3, try 2: check fails
    expect(await fixture.runBootUnits()).toMatchObject({ next: "reboot-on-failure", output: expect.stringContaining("rebooting (boot_counter=0)") });
    await fixture.rebootWhenAsked(); // counter out: the bootloader falls back to v2
    expect(fixture.disk.bootLog.slice(-3)).toEqual([expect.stringMatching(/ 2$/), expect.stringMatching(/ 1$/), expect.stringMatching(/ 0$/)]);
    const rolledBack = await until(async () => {
      const d = await fixture.device();
      return d.state === "rolled-back" ? d : null;
    }, "the rolled-back report", 60_000);
    expect(rolledBack.booted.version).toBe("2");
    await fixture.agent!.agent.idle();
    // Every reboot was the unit's, and the counter is the bless unit's alone to clear.
    expect(await access(fixture.rebootFlag).then(() => "asked", () => "not asked")).toBe("not asked");
    expect((await fixture.disk.readEnv())?.boot_counter).toBe("-1");
    const fallback = await fixture.runBootUnits();
    expect(fallback.check).toEqual({ exitCode: 0, verdict: { verdict: "rolled-back", version: "2", reason: expect.stringContaining("app.sh failed") } });
    expect(fallback).toMatchObject({ next: "bless", output: expect.stringContaining("boot blessed") });
    fixture.settings.bootUnits = false;
    const report = (await api("devices/dev-1")).json.events.find((e: { report: { state: string } | null }) => e.report?.state === "rolled-back").report;
    expect(report.rolledBack).toEqual({ from: { commit: v3, version: "3" }, to: expect.objectContaining({ version: "2" }), reason: "required health check app.sh failed: app: port 8080 not answering\n(exit code 1)" });
    // Permanent: v3's deployment is gone, v2 is the default again.
    const deployments = await readDeployments({ sysroot: fixture.disk.sysroot, rootDir: "/nonexistent" });
    expect(deployments.map((d) => d.version)).not.toContain("3");
    expect(deployments[0]!.version).toBe("2");
    // The spent counter is cleared: the next boot starts v2 without a fallback.
    expect((await fixture.disk.readEnv())?.boot_counter).toBeUndefined();
    await fixture.stopAgent();
    await fixture.disk.boot();
    expect(fixture.disk.bootLog.at(-1)).toMatch(/ -$/);
    expect((await readDeployments({ sysroot: fixture.disk.sysroot, rootDir: fixture.disk.rootDir })).find((d) => d.booted)?.version).toBe("2");
    const rollout = await until(async () => {
      const r = (await api(`rollouts/${json.rollout.id}`)).json.rollout;
      return r.progress.state === "paused" ? r : null;
    }, "the rollout to pause on its threshold");
    expect(rollout.devices).toEqual([expect.objectContaining({ deviceId: "dev-1", status: "rolled-back" })]);
    await rm(check);
  }, 180_000);
});
