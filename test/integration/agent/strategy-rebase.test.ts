/**
 * A reboot strategy that says "not now" is asked again after the delay it names, and the
 * update reboots once it says yes; a rebase stages a commit of another ref (the manifest is
 * checked against the ref asked for, also when the download re-verifies it).
 */
import { pinnedTrust } from "../../../device/trust/device-trust.ts";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../../device/agent/agent.ts";
import { loadIdentity } from "../../../device/agent/identity.ts";
import { grubenvBootCounter } from "../../../device/health/boot-counter.ts";
import { upgrade } from "../../../device/ops/upgrade.ts";
import type { RebootStrategy } from "../../../device/strategy/index.ts";
import { readDeployments } from "../../../device/sysroot/deployments.ts";
import { silentLogger } from "../../../shared/log.ts";
import { publish } from "../../../server/publish/publish.ts";
import { manifestPath } from "../../../shared/wire/manifest.ts";
import { AgentFixture, REF } from "../../helpers/agent-fixture.ts";
import { commitSyntheticImage } from "../../helpers/synthetic-image.ts";
import { until } from "../../helpers/wait.ts";

const OTHER_REF = "test/bookworm/test-machine/other-image";
const fixture = new AgentFixture();
let allowed = false;
const asked: boolean[] = [];
const strategy: RebootStrategy = {
  label: "window",
  canRebootNow: () => (asked.push(allowed), allowed),
  retryInMs: () => 200,
};

async function makeAgent(): Promise<Agent> {
  const agent = new Agent({
    settings: fixture.settings,
    identity: await loadIdentity(fixture.settings.stateDir, fixture.settings.deviceId),
    trust: pinnedTrust([fixture.key.publicKey]),
    bootCounter: grubenvBootCounter(fixture.settings.grubenv),
    strategy,
    publishReport: async () => undefined,
    serverReached: async () => true,
    log: silentLogger(),
  });
  await agent.start();
  return agent;
}

beforeAll(async () => {
  await fixture.setUp("agent-strategy");
}, 60_000);
afterAll(() => fixture.tearDown());

describe("reboot strategy and rebase", () => {
  it("re-asks the strategy after its delay instead of failing, then reboots", async () => {
    await fixture.publishVersion(2);
    const agent = await makeAgent();
    try {
      const signed = JSON.parse(await readFile(join(fixture.repo, manifestPath("stable", REF)), "utf8"));
      await agent.acceptManifest("r-window", signed);
      await until(() => asked.length >= 2, "the strategy to be asked again", 10_000);
      expect(agent.state.name).toBe("staged");
      allowed = true;
      await until(() => agent.state.name === "rebooting", "the reboot once the strategy allows it", 10_000);
      expect(asked.slice(0, 2)).toEqual([false, false]);
    } finally {
      agent.stop();
      await agent.idle();
    }
  });

  it("rebases onto another ref", async () => {
    await commitSyntheticImage(fixture.repo, OTHER_REF, fixture.dir, { version: "10", sequence: 10, payloadSeed: "other" });
    await publish({ repo: fixture.repo, ref: OTHER_REF, key: fixture.key, channel: "stable", deltaDepth: 1, expiresInSeconds: 86400, log: silentLogger() });
    // A fresh agent state, v1 still booted (the v2 staged above is dropped with it).
    await rm(fixture.settings.stateDir, { recursive: true, force: true });
    allowed = false;
    const agent = await makeAgent();
    try {
      const result = await upgrade(agent, fixture.settings, pinnedTrust([fixture.key.publicKey]), { ref: OTHER_REF });
      expect(result).toMatchObject({ available: true, state: "staged", manifest: { ref: OTHER_REF, version: "10" } });
      const deployments = await readDeployments({ sysroot: fixture.disk.sysroot, rootDir: fixture.disk.rootDir });
      expect(deployments[0]).toMatchObject({ origin: OTHER_REF, version: "10", pending: true });
    } finally {
      agent.stop();
      await agent.idle();
    }
  });
});
