/**
 * `apt-ostree` as a process on a throwaway sysroot: status in rpm-ostree's shape, upgrade --check,
 * upgrade without a running agent (it stages through the same state machine), db diff, kargs,
 * rollback and cleanup; then upgrade through the running agent's control socket.
 */
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAgentRecord } from "../../../device/agent/state-file.ts";
import { AgentFixture } from "../../helpers/agent-fixture.ts";
import { DEVICE_CLI } from "../../helpers/cli.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();
let config: string;

async function cli(args: string[]) {
  return execa(process.execPath, [DEVICE_CLI, ...args, "--config", config], { reject: false });
}
async function status() {
  const result = await cli(["status", "--json"]);
  expect(result.exitCode, result.stderr).toBe(0);
  return JSON.parse(result.stdout);
}

beforeAll(async () => {
  await fixture.setUp("device-cli");
  config = await fixture.writeConfig();
}, 60_000);
afterAll(() => fixture.tearDown());

describe("apt-ostree", () => {
  it("prints status with rpm-ostree's keys, booted v1", async () => {
    const json = await status();
    expect(json.state).toBe("idle");
    expect(json.deployments).toEqual([
      expect.objectContaining({ checksum: fixture.commits.get(1), version: "1", origin: expect.stringContaining("test-image"), timestamp: expect.any(Number), booted: true, staged: false, pending: false, rollback: false }),
    ]);
    const text = await cli(["status"]);
    expect(text.stdout).toMatch(/^State: idle\nDeployments:\n● test\/bookworm\/test-machine\/test-image\n\s+Version: 1 \(2025-01-01T00:00:01Z\)\n\s+Commit: [0-9a-f]{64}/);
  });

  it("says when there is nothing to upgrade (exit 77) and when there is", async () => {
    const none = await cli(["upgrade", "--check"]);
    expect(none.exitCode).toBe(77);
    expect(none.stdout).toMatch(/No updates available: 1/);
    await fixture.publishVersion(2);
    const some = await cli(["upgrade", "--check", "--json"]);
    expect(some.exitCode).toBe(0);
    expect(JSON.parse(some.stdout)).toMatchObject({ available: true, manifest: { version: "2" }, booted: { version: "1" } });
  });

  it("stages v2 without a running agent, recorded for the agent's next start", async () => {
    const result = await cli(["upgrade"]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/Staged 2/);
    const json = await status();
    expect(json.deployments.map((d: any) => [d.version, d.booted, d.pending, d.rollback])).toEqual([["2", false, true, false], ["1", true, false, false]]);
    expect((await readAgentRecord(fixture.settings.stateDir)).state).toMatchObject({ name: "staged", target: { version: "2", manual: true } });
  });

  it("diffs the packages of booted and pending", async () => {
    const result = await cli(["db", "diff", "--json"]);
    expect(JSON.parse(result.stdout)).toMatchObject({ from: { version: "1" }, to: { version: "2" }, upgraded: [{ name: "app", from: "1", to: "2" }] });
    expect((await cli(["db", "diff"])).stdout).toMatch(/Upgraded:\n  app 1 -> 2/);
    expect((await cli(["db", "diff", "1", "nope"])).stderr).toMatch(/no deployment has version or commit 'nope'/);
  });

  it("changes kernel arguments in a new deployment and refuses to delete one that is not set", async () => {
    const added = await cli(["kargs", "--append", "quiet", "--append", "console=ttyS0", "--json"]);
    expect(added.exitCode, added.stderr).toBe(0);
    expect(JSON.parse((await cli(["kargs", "--json"])).stdout).kargs).toEqual(expect.arrayContaining(["quiet", "console=ttyS0"]));
    const replaced = await cli(["kargs", "--replace", "console=ttyS1", "--delete", "quiet", "--json"]);
    expect(JSON.parse(replaced.stdout).kargs).toContain("console=ttyS1");
    expect(JSON.parse(replaced.stdout).kargs).not.toContain("quiet");
    const refused = await cli(["kargs", "--delete", "nosuch"]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/kernel argument 'nosuch' is not set/);
  });

  it("rolls back a pending deployment, then cleans up", async () => {
    const result = await cli(["rollback"]);
    expect(result.exitCode, result.stderr).toBe(0);
    const json = await status();
    expect(json.deployments[0]).toMatchObject({ version: "1", booted: true });
    expect(json.deployments.some((d: any) => d.pending)).toBe(false);
    expect(json.state).toBe("idle");
    const cleaned = await cli(["cleanup", "-r", "-m"]);
    expect(cleaned.exitCode, cleaned.stderr).toBe(0);
    expect((await status()).deployments).toHaveLength(1);
    expect((await cli(["cleanup"])).exitCode).toBe(2);
  });

  it("boot-check fails when no agent answers, and passes with the agent's verdict when no update is on trial", async () => {
    const alone = await cli(["boot-check", "--timeout", "2s"]);
    expect(alone.exitCode).toBe(1);
    expect(alone.stderr).toMatch(/apt-ostreed did not answer on \S+agent\.sock within 2 s/);
    expect((await cli(["boot-check", "--timeout", "soon"])).stderr).toContain("--timeout: 'soon' is not a duration");
    await fixture.startAgent();
    const answered = await cli(["boot-check", "--timeout", "30s"]);
    expect(answered.exitCode, answered.stderr).toBe(0);
    expect(answered.stdout).toMatch(/^Boot healthy: no update on trial \(agent \w+\)\.$/m);
    await fixture.stopAgent();
  });

  it("upgrades through the running agent's socket, which reports to the server", async () => {
    await fixture.startAgent();
    await until(async () => (await fixture.device())?.booted?.version === "1", "the agent to report");
    const result = await cli(["upgrade", "--json"]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ available: true, state: "staged", manifest: { version: "2" } });
    await until(async () => ((await fixture.device()).state === "staged" ? true : null), "the staged report");
    expect((await fixture.device()).pending).toMatchObject({ version: "2" });
  });
});
