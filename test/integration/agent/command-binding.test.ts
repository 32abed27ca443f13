/**
 * A command is bound to its target (issue 18, finding 9): the real server signs each command for
 * one device, and the real agent refuses a command the broker copied from another device's topic
 * (a canary widened to the fleet), an older command replayed after a newer one it accepted (the
 * release it just rolled back from, pushed again), and an update whose manifest is for another
 * channel than the one it follows. Nothing on disk changes for any of them.
 */
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadIdentity } from "../../../device/agent/identity.ts";
import { stateFilePath } from "../../../device/agent/state-file.ts";
import { publish } from "../../../server/publish/publish.ts";
import { silentLogger } from "../../../shared/log.ts";
import { runOstree } from "../../../shared/ostree/exec.ts";
import { generateKeyPair, type Ed25519KeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { DEFAULT_TOPIC_PREFIX, deviceTopic } from "../../../shared/wire/topics.ts";
import { AgentFixture, DEVICE_ID, REF } from "../../helpers/agent-fixture.ts";
import { until } from "../../helpers/wait.ts";
import { TEST_ENROLLMENT_SECRET } from "../../helpers/enrollment-secret.ts";

const fixture = new AgentFixture();
const { api } = fixture;
const cmdTopic = (deviceId: string) => deviceTopic(DEFAULT_TOPIC_PREFIX, deviceId, "cmd");

async function startAgent(): Promise<void> {
  fixture.keepLogs = true;
  await fixture.startAgent();
  await until(async () => (await fixture.device())?.online === true, "the agent to connect");
}

const logged = (event: string) => fixture.logged(event);
const agentState = () => fixture.agent!.agent.state;

/** What must not change: deployments, refs, boot entries, and the agent's state. */
async function diskSnapshot(): Promise<string> {
  const sysroot = fixture.disk.sysroot;
  const status = await runOstree(["admin", "status", `--sysroot=${sysroot}`]);
  const refs = await runOstree(["refs", `--repo=${join(sysroot, "ostree", "repo")}`]);
  const entries = (await readdir(join(sysroot, "boot", "loader", "entries"))).sort().join(",");
  const state = JSON.parse(await readFile(stateFilePath(fixture.settings.stateDir), "utf8")).state;
  return [status, refs, entries, state.name, state.target?.command ?? "-"].join("\n");
}

/** A connection as `deviceId` that keeps what the server publishes on its command topic. */
async function listenAs(deviceId: string, key: Ed25519KeyPair): Promise<{ received: Array<{ payload: string; id: string; type: string }>; leave(): Promise<void> }> {
  const client: MqttClient = await mqtt.connectAsync(`mqtt://127.0.0.1:${fixture.server.mqttPort}`, {
    clientId: deviceId,
    username: deviceId,
    password: createDeviceToken(deviceId, key, new Date(), undefined, TEST_ENROLLMENT_SECRET),
    reconnectPeriod: 0,
    protocolVersion: 4,
  });
  const received: Array<{ payload: string; id: string; type: string }> = [];
  client.on("message", (_topic, payload) => {
    if (payload.length === 0) return; // a cleared retained message
    const { command } = JSON.parse(payload.toString()) as { command: { id: string; type: string } };
    received.push({ payload: payload.toString(), id: command.id, type: command.type });
  });
  await client.subscribeAsync(cmdTopic(deviceId), { qos: 1 });
  await until(async () => (await api(`devices/${deviceId}`)).json.device?.online === true, `the server to count ${deviceId} online`);
  return {
    received,
    leave: async () => {
      await client.endAsync(true);
      await until(async () => (await api(`devices/${deviceId}`)).json.device?.online === false, `the server to count ${deviceId} offline`);
    },
  };
}

async function createRollout(body: Record<string, unknown>): Promise<string> {
  const { status, json } = await api("rollouts", { ref: REF, waves: "100%", waveDelay: "0s", waveTimeout: "10m", ...body });
  expect(status, JSON.stringify(json)).toBe(201);
  return json.rollout.id;
}

async function reportsFor(command: string): Promise<Array<{ state: string; error?: string }>> {
  return (await fixture.events()).filter((e) => e.report?.command === command).map((e) => e.report);
}

/** The broker (hostile, or keeping what it should have dropped) delivers `payload` on dev-1's command topic. */
async function brokerDelivers(payload: string): Promise<void> {
  const before = logged("agent.command.rejected").length;
  const stateBefore = agentState();
  await fixture.server.broker.publish(cmdTopic(DEVICE_ID), payload, true);
  await until(() => logged("agent.command.rejected").length > before || agentState() !== stateBefore, "the agent to take the command");
  // Whatever it started has had its moment.
  await new Promise((resolve) => setTimeout(resolve, 500));
}

beforeAll(async () => {
  await fixture.setUp("agent-binding");
  await fixture.startAgent();
  await until(async () => (await fixture.device())?.booted?.version === "1", "dev-1 to enroll and report v1");
  await fixture.stopAgent();
  await fixture.publishVersion(2);
}, 60_000);

afterEach(async () => {
  await fixture.stopAgent();
  // Nothing of one test's hostile deliveries stays retained for the next.
  await fixture.server.broker.publish(cmdTopic(DEVICE_ID), "", true);
});
afterAll(() => fixture.tearDown());

describe("the agent takes only commands meant for it, newer than the last, for its channel", () => {
  it("refuses a command copied from another device's topic", async () => {
    const canary = await listenAs("dev-2", generateKeyPair());
    await startAgent();
    const before = await diskSnapshot();
    const rollout = await createRollout({ select: { devices: ["dev-2"] } });
    await until(() => canary.received.some((m) => m.type === "update"), "dev-2's update command");
    const copied = canary.received.find((m) => m.type === "update")!.payload;

    await brokerDelivers(copied);
    expect(agentState().name).toBe("idle");
    expect(logged("agent.command.rejected")).toEqual([
      expect.objectContaining({ code: "E_COMMAND_WRONG_DEVICE", reason: `command ${rollout} (update) is for device dev-2, not this device (dev-1): refused` }),
    ]);
    expect(await reportsFor(rollout)).toEqual([]);
    expect(await diskSnapshot()).toBe(before);
    await api(`rollouts/${rollout}/abort`, {});
    await canary.leave();
  }, 60_000);

  it("refuses an update whose manifest is for another channel than the one it follows", async () => {
    await fixture.publishVersion(3, { publish: false });
    await publish({ repo: fixture.repo, ref: REF, key: fixture.key, channel: "beta", deltaDepth: 2, expiresInSeconds: 86400, log: silentLogger() });
    await startAgent();
    const before = await diskSnapshot();
    const rollout = await createRollout({ channel: "beta", select: { devices: [DEVICE_ID] } });
    const [refused] = await until(async () => ((await reportsFor(rollout)).some((r) => r.state === "failed") ? reportsFor(rollout) : null), "the refusal to be reported");
    expect(refused).toMatchObject({ state: "failed", error: "refused: manifest is for channel beta, this device follows stable" });
    expect(agentState().name).toBe("idle");
    expect(logged("agent.manifest.rejected")).toEqual([expect.objectContaining({ command: rollout, reason: "manifest is for channel beta, this device follows stable" })]);
    expect(await diskSnapshot()).toBe(before);
  }, 60_000);

  it("refuses an older command replayed after a newer one it accepted", async () => {
    // While the agent is away, rollout A's command reaches dev-1's topic, and A times out.
    const identity = await loadIdentity(fixture.settings.stateDir, DEVICE_ID);
    const away = await listenAs(DEVICE_ID, identity.key);
    const rolloutA = await createRollout({ select: { devices: [DEVICE_ID] }, waveTimeout: "1s", maxFailures: "100%" });
    await until(async () => ((await api(`rollouts/${rolloutA}`)).json.rollout.progress.state === "completed" ? true : null), "rollout A to time out");
    // Rollout B's command replaces it; the agent connects and takes B, but v2 fails its required
    // check on every try and the bootloader falls back to v1.
    const rolloutB = await createRollout({ select: { devices: [DEVICE_ID] } });
    await until(() => away.received.some((m) => m.id === rolloutB), "rollout B's command");
    await away.leave();
    const older = away.received.find((m) => m.id === rolloutA)!.payload;
    const failing = join(fixture.settings.healthDir, "required", "app.sh");
    await mkdir(dirname(failing), { recursive: true });
    await writeFile(failing, "#!/bin/sh\necho 'app: not answering'\nexit 1\n", { mode: 0o755 });
    await startAgent();
    while (fixture.agent!.agent.state.name !== "rolled-back") await fixture.rebootWhenAsked();
    await rm(failing);
    await fixture.stopAgent();
    await startAgent();
    await until(async () => (await fixture.device())?.state === "rolled-back", "dev-1 to report the rollback");
    await fixture.agent!.agent.idle();
    const before = await diskSnapshot();

    // The broker replays rollout A's command, which would install v2 again. (The last command the
    // agent took may be B's withdrawal: the server withdraws an update from a device that rolled back.)
    await brokerDelivers(older);
    expect(agentState()).toMatchObject({ name: "rolled-back", target: { command: rolloutB } });
    expect(logged("agent.command.rejected")).toEqual([
      expect.objectContaining({ code: "E_COMMAND_STALE", reason: expect.stringMatching(new RegExp(`^command ${rolloutA} \\(update\\) was issued at \\S+, before (?:command ${rolloutB} \\(update\\)|the withdrawal of ${rolloutB}) issued at \\S+ that this device accepted: a stale or replayed copy$`)) }),
    ]);
    expect((await reportsFor(rolloutA)).filter((r) => r.state !== "idle")).toEqual([]);
    expect(await diskSnapshot()).toBe(before);
  }, 120_000);
});
