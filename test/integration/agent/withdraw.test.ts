/**
 * Pause and abort reach devices that were away (issue 18, finding 5): the server replaces the
 * retained update command on the device's topic with a signed withdrawal, so a device that
 * connects after an abort gets no update and one that connects during a pause waits for the
 * resume; a stale copy of the update command replayed after the withdrawal is refused; an abort
 * stops a download in progress as `apt-ostree cancel` does. The real server, its embedded broker
 * and the real agent on a throwaway sysroot.
 *
 * "Away" as the server sees it: the device's connection is up (so the rollout sends it its
 * command, retained) but nothing reads it, as when a device loses power and the broker has not
 * noticed yet; the agent itself connects later.
 */
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { pino, type Logger } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadIdentity } from "../../../device/agent/identity.ts";
import { runAgent } from "../../../device/agent/run.ts";
import { stateFilePath } from "../../../device/agent/state-file.ts";
import { runOstree } from "../../../shared/ostree/exec.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { DEFAULT_TOPIC_PREFIX, deviceTopic } from "../../../shared/wire/topics.ts";
import { AgentFixture, DEVICE_ID, REF } from "../../helpers/agent-fixture.ts";
import { freePort } from "../../helpers/mosquitto.ts";
import { until } from "../../helpers/wait.ts";
import { TEST_ENROLLMENT_SECRET } from "../../helpers/enrollment-secret.ts";

const fixture = new AgentFixture();
const { api } = fixture;
const CMD_TOPIC = deviceTopic(DEFAULT_TOPIC_PREFIX, DEVICE_ID, "cmd");
let logLines: Array<Record<string, unknown>> = [];

/** The agent, in this process, with its log kept for the assertions. */
async function startAgent(): Promise<void> {
  logLines = [];
  const log: Logger = pino({ level: "debug" }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
  fixture.agent = await runAgent(fixture.settings, log);
}

const logged = (event: string) => logLines.filter((line) => line.event === event);

/** What must not change: deployments, refs, boot entries, and the agent's state. */
async function diskSnapshot(): Promise<string> {
  const sysroot = fixture.disk.sysroot;
  const status = await runOstree(["admin", "status", `--sysroot=${sysroot}`]);
  const refs = await runOstree(["refs", `--repo=${join(sysroot, "ostree", "repo")}`]);
  const entries = (await readdir(join(sysroot, "boot", "loader", "entries"))).sort().join(",");
  const state = JSON.parse(await readFile(stateFilePath(fixture.settings.stateDir), "utf8")).state.name;
  return [status, refs, entries, state].join("\n");
}

/**
 * A connection as dev-1 that the broker and the server count as the device being online, while
 * the agent is not running: what a device that lost power looks like until the broker notices.
 * It keeps what arrives on the command topic (the test's view of the retained message).
 */
async function ghostConnection(): Promise<{ received: Array<{ payload: string; type: string }>; leave(): Promise<void> }> {
  const identity = await loadIdentity(fixture.settings.stateDir, DEVICE_ID);
  const client: MqttClient = await mqtt.connectAsync(`mqtt://127.0.0.1:${fixture.server.mqttPort}`, {
    clientId: DEVICE_ID,
    username: DEVICE_ID,
    password: createDeviceToken(DEVICE_ID, identity.key, new Date(), undefined, TEST_ENROLLMENT_SECRET),
    reconnectPeriod: 0,
    protocolVersion: 4,
  });
  const received: Array<{ payload: string; type: string }> = [];
  client.on("message", (_topic, payload) => {
    const text = payload.toString();
    received.push({ payload: text, type: (JSON.parse(text) as { command: { type: string } }).command.type });
  });
  await client.subscribeAsync(CMD_TOPIC, { qos: 1 });
  await until(async () => (await fixture.device())?.online === true, "the server to count dev-1 online");
  return {
    received,
    leave: async () => {
      await client.endAsync(true);
      await until(async () => (await fixture.device())?.online === false, "the server to count dev-1 offline");
    },
  };
}

/** Creates a rollout of v2 to dev-1 and waits until its command is out (retained on dev-1's topic). */
async function rolloutSent(ghost: { received: Array<{ type: string }> }): Promise<string> {
  const { json } = await api("rollouts", { ref: REF, select: { devices: [DEVICE_ID] }, waves: "100%", waveDelay: "0s", waveTimeout: "10m" });
  await until(async () => ((await api(`rollouts/${json.rollout.id}`)).json.rollout.devices[0].status === "sent" ? true : null), "the command to be sent");
  await until(() => ghost.received.some((m) => m.type === "update"), "the update command on dev-1's topic");
  return json.rollout.id;
}

/** Starts the agent and waits until it took the retained message on its command topic, whatever it did with it. */
async function startAgentAndTakeRetained(): Promise<void> {
  await startAgent();
  await until(() => fixture.agent!.agent.state.name !== "idle" || logged("agent.command.withdrawn").length > 0 || logged("agent.command.rejected").length > 0, "the agent to take the retained command");
  // Whatever came with it (a report, a download starting) has had its moment.
  await new Promise((resolve) => setTimeout(resolve, 1000));
}

async function reportsFor(rollout: string): Promise<string[]> {
  return (await fixture.events()).filter((e) => e.report?.command === rollout).map((e) => e.report.state);
}

beforeAll(async () => {
  await fixture.setUp("agent-withdraw");
  await fixture.startAgent();
  await until(async () => (await fixture.device())?.booted?.version === "1", "dev-1 to enroll and report v1");
  await fixture.stopAgent();
  await fixture.publishVersion(2);
}, 60_000);

afterEach(() => fixture.stopAgent());
afterAll(() => fixture.tearDown());

describe("a withdrawn update is not installed", () => {
  it("a device away during a rollout's creation and abort connects afterwards and stays on what it runs", async () => {
    const ghost = await ghostConnection();
    const rollout = await rolloutSent(ghost);
    expect((await api(`rollouts/${rollout}/abort`, {})).json.rollout.progress.state).toBe("aborted");
    await ghost.leave();
    const before = await diskSnapshot();

    await startAgentAndTakeRetained();
    expect(fixture.agent!.agent.state.name).toBe("idle");
    expect(logged("agent.command.withdrawn")).toEqual([expect.objectContaining({ command: rollout, reason: "aborted" })]);
    expect(await reportsFor(rollout)).toEqual([]);
    expect(await diskSnapshot()).toBe(before);
    expect((await fixture.device()).booted.version).toBe("1");
  }, 60_000);

  it("refuses a stale copy of the update command replayed after the withdrawal", async () => {
    const ghost = await ghostConnection();
    const rollout = await rolloutSent(ghost);
    await api(`rollouts/${rollout}/abort`, {});
    await ghost.leave();
    const update = ghost.received.find((m) => m.type === "update")!.payload;
    await startAgentAndTakeRetained();
    const before = await diskSnapshot();

    // A broker that kept the old retained copy (or replays it on purpose) sends it again.
    await fixture.server.broker.publish(CMD_TOPIC, update, true);
    await until(() => logged("agent.command.rejected").length > 0 || fixture.agent!.agent.state.name !== "idle", "the agent to take the replayed command");
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(fixture.agent!.agent.state.name).toBe("idle");
    expect(logged("agent.command.rejected")).toEqual([expect.objectContaining({ code: "E_COMMAND_STALE", reason: expect.stringMatching(/^command .* was issued at .*, before .* (withdrawal|command) .* accepted/) })]);
    expect(await reportsFor(rollout)).toEqual([]);
    expect(await diskSnapshot()).toBe(before);
  }, 60_000);

  it("an abort stops a download in progress, as apt-ostree cancel does", async () => {
    // The delta's files are held back until the abort went through.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const proxy = await holdingProxy(fixture.server.httpPort, gate);
    const server = fixture.settings.server;
    fixture.settings = { ...fixture.settings, server: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` };
    try {
      await startAgent();
      await until(async () => (await fixture.device())?.online === true, "the agent to connect");
      const before = await diskSnapshot();
      const { json } = await api("rollouts", { ref: REF, select: { devices: [DEVICE_ID] }, waves: "100%", waveDelay: "0s", waveTimeout: "10m" });
      await fixture.agent!.agent.waitFor((s) => s.name === "downloading", 15_000);
      await api(`rollouts/${json.rollout.id}/abort`, {});
      await fixture.agent!.agent.waitFor((s) => s.name === "idle", 15_000);
      release();
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(fixture.agent!.agent.state.name).toBe("idle");
      expect(logged("agent.command.withdrawn")).toEqual([expect.objectContaining({ command: json.rollout.id, reason: "aborted" })]);
      expect(await diskSnapshot()).toBe(before);
      await fixture.stopAgent();
    } finally {
      release();
      fixture.settings = { ...fixture.settings, server };
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  }, 60_000);

  it("an aborted release is not installed by polling while the broker is unreachable", async () => {
    const ghost = await ghostConnection();
    const rollout = await rolloutSent(ghost);
    await api(`rollouts/${rollout}/abort`, {});
    await ghost.leave();
    // The agent takes the withdrawal (it never sees the update command), then loses the broker.
    await startAgentAndTakeRetained();
    await fixture.stopAgent();
    const before = await diskSnapshot();
    const mqttUrl = fixture.settings.mqtt;
    fixture.settings = { ...fixture.settings, mqtt: `mqtt://127.0.0.1:${await freePort()}`, pollSeconds: 0.5 };
    try {
      await startAgent();
      // The channel still publishes v2, the aborted rollout's commit.
      await until(() => logged("agent.poll.refused").length >= 2 || fixture.agent!.agent.state.name !== "idle", "two polls to refuse the withdrawn release", 15_000);
      expect(fixture.agent!.agent.state.name).toBe("idle");
      expect(logged("agent.poll.update")).toEqual([]);
      expect(logged("agent.poll.refused")[0]).toMatchObject({ code: "E_UPDATE_WITHDRAWN", command: rollout, reason: expect.stringMatching(/withdrew \(rollout aborted\): not installed by polling$/) });
      await fixture.stopAgent();
      expect(await diskSnapshot()).toBe(before);
      expect(await reportsFor(rollout)).toEqual([]);
    } finally {
      fixture.settings = { ...fixture.settings, mqtt: mqttUrl };
    }
  }, 60_000);
});

describe("a paused rollout", () => {
  it("keeps a device that connects during the pause from starting, and the resume starts it", async () => {
    const ghost = await ghostConnection();
    const rollout = await rolloutSent(ghost);
    expect((await api(`rollouts/${rollout}/pause`, {})).json.rollout.progress.state).toBe("paused");
    await ghost.leave();
    const before = await diskSnapshot();

    await startAgentAndTakeRetained();
    expect(fixture.agent!.agent.state.name).toBe("idle");
    expect(logged("agent.command.withdrawn")).toEqual([expect.objectContaining({ command: rollout, reason: "paused" })]);
    expect(await reportsFor(rollout)).toEqual([]);
    expect(await diskSnapshot()).toBe(before);

    expect((await api(`rollouts/${rollout}/resume`, {})).json.rollout.progress.state).toBe("running");
    await fixture.rebootWhenAsked();
    await until(async () => ((await api(`rollouts/${rollout}`)).json.rollout.progress.state === "completed" ? true : null), "the resumed rollout to complete", 60_000);
    expect(await fixture.device()).toMatchObject({ state: "healthy", booted: { version: "2" } });
  }, 120_000);
});

/** Forwards to the server, holding back requests for delta files until `gate` resolves. */
async function holdingProxy(port: number, gate: Promise<void>): Promise<Server> {
  const proxy = createServer((req, res) => {
    void (req.url?.includes("/deltas/") ? gate : Promise.resolve()).then(() => {
      const upstream = request({ host: "127.0.0.1", port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  return proxy;
}
