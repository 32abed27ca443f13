/** Wires the agent's parts from its settings: identity, trusted root, boot counter, strategy, MQTT. */
import { errorChain } from "../../shared/errors.ts";
import { AptOstreeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { AgentSettings } from "../config/settings.ts";
import { grubenvBootCounter } from "../health/boot-counter.ts";
import { rebootStrategy } from "../strategy/index.ts";
import { Agent, type AgentOptions } from "./agent.ts";
import { loadIdentity } from "./identity.ts";
import { loadEnrollmentSecret } from "./enrollment-secret.ts";
import { connectMqtt, type MqttLink } from "./mqtt-link.ts";
import { removeAtomicWriteLeftovers } from "../../shared/fs/atomic-write.ts";
import { acquirePidLock, LockHeldError } from "../../shared/fs/pid-lock.ts";
import { stateLockPath } from "./state-file.ts";
import { handleControl, serveControlSocket } from "./control-socket.ts";
import { startPoller } from "./poll.ts";
import { loadDeviceTrust } from "../trust/load.ts";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { runProgram } from "../../shared/process/run.ts";
import { writeCodeCache } from "../update/code-cache.ts";
import { bundledHttpClient, useHttpClientCodeCache, useTrustedCa } from "../update/load-http-client.ts";

export interface RunningAgent {
  agent: Agent;
  deviceId: string;
  stop(): Promise<void>;
}

export async function runAgent(settings: AgentSettings, log: Logger, tuning: Pick<AgentOptions, "stateWriteRetryMs"> = {}): Promise<RunningAgent> {
  await mkdir(settings.stateDir, { recursive: true, mode: 0o700 });
  const releaseLock = await takeStateLock(settings, 60_000);
  // Holding the lock, nothing else writes here: what a kill -9 left between write and rename goes.
  const leftovers = await removeAtomicWriteLeftovers(settings.stateDir);
  if (leftovers.length > 0) log.info({ event: "agent.leftovers.removed", files: leftovers }, `removed ${leftovers.join(", ")} left by an interrupted write`);
  const identity = await loadIdentity(settings.stateDir, settings.deviceId);
  // https:// trusts the pinned CA alone (read at the first https:// request; http:// never reads it).
  useTrustedCa(settings.caFile);
  const trust = await loadDeviceTrust(settings, log);
  let link: MqttLink | null = null;
  const agent = new Agent({
    settings,
    identity,
    trust,
    bootCounter: grubenvBootCounter(settings.grubenv),
    strategy: rebootStrategy(settings),
    publishReport: async (payload) => {
      if (!link) throw new Error("no broker link yet");
      await link.publishReport(payload);
    },
    serverReached: () => link?.waitConnected(settings.serverReachTimeoutSeconds * 1000) ?? Promise.resolve(false),
    log,
    ...tuning,
  });
  link = connectMqtt({
    settings,
    identity,
    enrollmentSecret: await loadEnrollmentSecret(settings.enrollmentSecretFile, log),
    // takeCommand logs what it refuses; nothing else may end the process.
    onCommand: (payload) => void agent.onCommand(payload).catch((error: unknown) => log.error({ event: "agent.command.error", err: error }, `cannot take a command: ${errorChain(error)}`)),
    onConnected: () => void agent.onConnected(),
    log,
  });
  await agent.reserveSpace();
  await agent.start();
  const stopPolling = startPoller({ agent, settings, connected: () => link?.connected() ?? false, log });
  const control = await serveControlSocket(settings.socket, (request) => handleControl(agent, settings, trust, request), log);
  log.info({ event: "agent.started", deviceId: identity.deviceId, state: agent.state.name }, `apt-ostreed ${identity.deviceId}: ${agent.state.name}`);
  void prepareHttpClientCodeCache(settings, log);
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

/**
 * Points the bundled HTTP client at its code cache under the state dir and, when this build has
 * none there yet, has `apt-ostreed --write-code-cache` write it in a process of its own: the idle
 * agent does not compile the client (device/update/code-cache.ts).
 */
async function prepareHttpClientCodeCache(settings: AgentSettings, log: Logger): Promise<void> {
  const dir = join(settings.stateDir, "code-cache");
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (!(await useHttpClientCodeCache(dir))) return;
    const result = await runProgram(process.execPath, [...process.execArgv, process.argv[1]!, "--write-code-cache", dir]);
    if (result.exitCode !== 0) throw new Error(result.stderr.trim() || `exit ${result.exitCode ?? result.signal}`);
    log.info({ event: "agent.code-cache.written", dir }, `wrote the HTTP client's code cache in ${dir}`);
  } catch (error) {
    log.warn({ event: "agent.code-cache.failed", dir, err: error }, `no code cache for the HTTP client: ${(error as Error).message}`);
  }
}

/** `apt-ostreed --write-code-cache DIR`. */
export async function writeHttpClientCodeCache(dir: string): Promise<void> {
  const file = bundledHttpClient();
  if (file === null) throw new AptOstreeError("E_NOT_BUNDLED", "--write-code-cache works in the bundled agent (dist/apt-ostreed.cjs) only");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeCodeCache(file, dir);
}
