/**
 * With the broker unreachable, the agent polls the channel manifest over HTTP and takes a new
 * release on its own, verified like a command; the same release polled again is not redone.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pollId, pollOnce } from "../../../device/agent/poll.ts";
import { readDeployments } from "../../../device/sysroot/deployments.ts";
import { silentLogger } from "../../../shared/log.ts";
import { AgentFixture } from "../../helpers/agent-fixture.ts";
import { freePort } from "../../helpers/mosquitto.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();

beforeAll(async () => {
  await fixture.setUp("agent-poll");
  // Nothing listens there: the agent keeps retrying MQTT and polls meanwhile.
  fixture.settings = { ...fixture.settings, mqtt: `mqtt://127.0.0.1:${await freePort()}`, pollSeconds: 0.5, rebootStrategy: "command" };
  await fixture.startAgent();
}, 60_000);
afterAll(() => fixture.tearDown());

describe("polling while the broker is unreachable", () => {
  it("takes a release the channel publishes, once", async () => {
    const agent = fixture.agent!.agent;
    const options = { agent, settings: fixture.settings, connected: () => false, log: silentLogger() };
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(agent.state.name).toBe("idle");
    const v2 = await fixture.publishVersion(2);
    await until(() => agent.state.name === "staged", "the polled release to be staged", 30_000);
    expect(agent.state).toMatchObject({ name: "staged", target: { command: pollId(v2), version: "2" } });
    expect(await pollOnce(options)).toBe("busy");
    expect(await pollOnce({ ...options, connected: () => true })).toBe("connected");
    const deployments = await readDeployments({ sysroot: fixture.disk.sysroot, rootDir: fixture.disk.rootDir });
    expect(deployments.filter((d) => d.checksum === v2)).toHaveLength(1);
  }, 60_000);
});
