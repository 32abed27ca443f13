/** Wires the agent's parts from its settings: identity, pinned keys, boot counter, strategy, MQTT. */
import { AptOstreeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { readPinnedKeys } from "../../shared/sign/keys.ts";
import type { AgentSettings } from "../config/settings.ts";
import { grubenvBootCounter } from "../health/boot-counter.ts";
import { rebootStrategy } from "../strategy/index.ts";
import { Agent } from "./agent.ts";
import { loadIdentity } from "./identity.ts";
import { connectMqtt, type MqttLink } from "./mqtt-link.ts";
import { acquirePidLock, LockHeldError } from "../../shared/fs/pid-lock.ts";
import { stateLockPath } from "./state-file.ts";
import { handleControl, serveControlSocket } from "./control-socket.ts";
import { startPoller } from "./poll.ts";

export interface RunningAgent {
  agent: Agent;
  deviceId: string;
  stop(): Promise<void>;
}

export async function runAgent(settings: AgentSettings, log: Logger): Promise<RunningAgent> {
  const trustedKeys = await readPinnedKeys(settings.keysDir).catch((error: Error) => {
    throw new AptOstreeError("E_NO_KEYS", `cannot read the pinned server keys in ${settings.keysDir}: ${error.message}`, { cause: error });
  });
  if (trustedKeys.length === 0) throw new AptOstreeError("E_NO_KEYS", `no server key pinned in ${settings.keysDir}: the agent would trust nothing`);
  const identity = await loadIdentity(settings.stateDir, settings.deviceId);
  const releaseLock = await takeStateLock(settings, 60_000);
  let link: MqttLink | null = null;
  const agent = new Agent({
    settings,
    identity,
    trustedKeys,
    bootCounter: grubenvBootCounter(settings.grubenv),
    strategy: rebootStrategy(settings),
    publishReport: async (payload) => {
      if (!link) throw new Error("no broker link yet");
      await link.publishReport(payload);
    },
    serverReached: () => link?.waitConnected(settings.serverReachTimeoutSeconds * 1000) ?? Promise.resolve(false),
    log,
  });
  link = connectMqtt({
    settings,
    identity,
    onCommand: (payload) => void agent.onCommand(payload),
    onConnected: () => void agent.onConnected(),
    log,
  });
  await agent.start();
  const stopPolling = startPoller({ agent, settings, connected: () => link?.connected() ?? false, log });
  const control = await serveControlSocket(settings.socket, (request) => handleControl(agent, settings, trustedKeys, request), log);
  log.info({ event: "agent.started", deviceId: identity.deviceId, state: agent.state.name }, `apt-ostreed ${identity.deviceId}: ${agent.state.name}`);
  return {
    agent,
    deviceId: identity.deviceId,
    stop: async () => {
      stopPolling();
      await new Promise<void>((resolve) => control.close(() => resolve()));
      agent.stop();
      await agent.idle();
      await link?.close();
      await releaseLock();
    },
  };
}

/** The agent owns the state file; a CLI operation running without it may hold it for a moment: wait. */
async function takeStateLock(settings: AgentSettings, timeoutMs: number): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await acquirePidLock(stateLockPath(settings.stateDir), "another apt-ostreed or an apt-ostree command", { bootIdFile: settings.bootIdFile });
    } catch (error) {
      if (!(error instanceof LockHeldError) || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
