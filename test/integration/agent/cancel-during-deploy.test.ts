/**
 * An update stopped while ostree deploys it: `ostree admin deploy` is not interruptible, so a
 * cancel (or a rollout's abort) that lands during it returns the agent to idle while the deploy
 * still finishes. The deployment it leaves must not stay: nobody would arm the boot counter for
 * it or watch its first boot, and the next reboot would boot it. The real server and broker, the
 * real agent on a throwaway sysroot, the real ostree held at the start of its deploy by a wrapper
 * on PATH (the only way to stop it at that instant), then let go.
 */
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readDeployments } from "../../../device/sysroot/deployments.ts";
import { AgentFixture, DEVICE_ID, REF } from "../../helpers/agent-fixture.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();
let gate = "";
let pathBefore = "";

/** An `ostree` first on PATH that, while `gate/hold` exists, waits at the start of `admin deploy` (and says so in `gate/deploying`). */
async function holdDeploys(dir: string): Promise<string> {
  const real = (await execa("sh", ["-c", "command -v ostree"])).stdout.trim();
  const bin = join(dir, "bin");
  await mkdir(bin, { recursive: true });
  await writeFile(
    join(bin, "ostree"),
    `#!/bin/sh
if [ "$1" = admin ] && [ "$2" = deploy ] && [ -e '${dir}/hold' ]; then
  touch '${dir}/deploying'
  while [ -e '${dir}/hold' ]; do sleep 0.05; done
fi
exec '${real}' "$@"
`,
  );
  await chmod(join(bin, "ostree"), 0o755);
  return bin;
}

const deployments = async () => (await readDeployments({ sysroot: fixture.disk.sysroot, rootDir: fixture.disk.rootDir })).map((d) => d.checksum);

beforeAll(async () => {
  await fixture.setUp("agent-cancel-during-deploy", { publishUpTo: 2 });
  fixture.keepLogs = true;
  gate = join(fixture.dir, "gate");
  pathBefore = process.env.PATH ?? "";
  process.env.PATH = `${await holdDeploys(gate)}:${pathBefore}`;
  await fixture.startAgent();
  await until(async () => (await fixture.device())?.online, "the device online", 30_000);
}, 60_000);

afterAll(async () => {
  process.env.PATH = pathBefore;
  await rm(join(gate, "hold"), { force: true });
  await fixture.stopAgent();
  await fixture.tearDown();
});

describe("an update aborted while ostree deploys it", () => {
  it("is removed once the deploy ends, and the agent stays idle on what it runs", async () => {
    await writeFile(join(gate, "hold"), "");
    const before = await deployments();
    expect(before).toEqual([fixture.commits.get(1)]);
    const { json } = await fixture.api("rollouts", { ref: REF, select: { devices: [DEVICE_ID] }, waves: "100%", waveDelay: "0s", waveTimeout: "10m" });
    const rollout = json.rollout.id;
    await until(() => execa("test", ["-e", join(gate, "deploying")]).then(() => true, () => false), "the deploy to start", 60_000);

    // Aborted mid-deploy: the withdrawal reaches the agent, which is still "downloading" as far as its state goes.
    await fixture.api(`rollouts/${rollout}/abort`, {});
    await until(() => fixture.agent!.agent.state.name === "idle", "the agent idle after the abort", 30_000);
    expect(fixture.logged("agent.command.withdrawn")).toEqual([expect.objectContaining({ command: rollout, reason: "aborted" })]);

    // The deploy goes on to its end, and its deployment is taken away again.
    await rm(join(gate, "hold"));
    await until(() => fixture.logged("agent.stage.dropped").length > 0, "the staged deployment dropped", 60_000);
    expect(fixture.logged("agent.stage.dropped")[0]).toMatchObject({ commit: fixture.commits.get(2), state: "idle" });
    await until(async () => (await deployments()).length === 1, "the deployment list as before", 30_000);
    expect(await deployments()).toEqual(before);
    expect(fixture.agent!.agent.state.name).toBe("idle");
    // Nothing arms the counter or asks for a reboot for it.
    await expect(execa("test", ["-e", fixture.rebootFlag])).rejects.toThrow();
    const staged = (await fixture.events()).filter((e) => e.kind === "report" && e.report.command === rollout && e.report.state === "staged");
    expect(staged).toEqual([]);
  }, 120_000);
});
