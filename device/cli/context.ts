/**
 * What every `apt-ostree` command shares: `--sysroot` and `--config`, the agent's settings, and
 * the way to an agent: the running one through its control socket, or, when none runs, one
 * loaded in this process from the same state file (so the next boot's agent knows what was done).
 */
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import type { OptionSpec } from "../../shared/cli/command.ts";
import { AptOstreeError } from "../../shared/errors.ts";
import { silentLogger, createLogger } from "../../shared/log.ts";
import { loadDeviceTrust } from "../trust/load.ts";
import { useTrustedCa } from "../update/load-http-client.ts";
import { Agent } from "../agent/agent.ts";
import { askAgent, handleControl, type ControlRequest } from "../agent/control-socket.ts";
import { loadIdentity } from "../agent/identity.ts";
import { stateLockPath } from "../agent/state-file.ts";
import { acquirePidLock, LockHeldError } from "../../shared/fs/pid-lock.ts";
import { CONFIG_FILES, loadAgentSettings, type AgentSettings } from "../config/settings.ts";
import { grubenvBootCounter } from "../health/boot-counter.ts";
import { commandStrategy } from "../strategy/command.ts";
import { readDeployments, type Deployment } from "../sysroot/deployments.ts";

export const COMMON_OPTIONS = {
  sysroot: { type: "string", valueName: "DIR", description: "Operate on the OSTree sysroot at DIR (default: the agent's, usually /)" },
  config: { type: "string", multiple: true, valueName: "FILE", description: `Agent config fragments (default ${CONFIG_FILES.join(", ")})` },
} satisfies Record<string, OptionSpec>;

export interface CommonOptions {
  sysroot?: string;
  config?: string[];
}

export async function cliSettings(options: CommonOptions): Promise<AgentSettings> {
  const settings = await loadAgentSettings(options.config && options.config.length > 0 ? options.config.map((f) => resolve(f)) : CONFIG_FILES, { requireRef: false });
  if (options.sysroot === undefined) return settings;
  const sysroot = resolve(options.sysroot);
  return { ...settings, sysroot };
}

export async function deploymentsOf(settings: AgentSettings): Promise<Deployment[]> {
  return readDeployments({ sysroot: settings.sysroot, rootDir: settings.rootDir });
}

/** Runs a control request in the running agent, or in one loaded here when none answers. */
export async function viaAgent(settings: AgentSettings, request: ControlRequest): Promise<unknown> {
  const deadline = Date.now() + 60_000;
  let release: (() => Promise<void>) | null = null;
  while (release === null) {
    const answer = await askAgent(settings.socket, request);
    if (answer !== null) {
      if (!answer.ok) throw new AptOstreeError(answer.code, answer.error);
      return answer.result;
    }
    try {
      await mkdir(settings.stateDir, { recursive: true, mode: 0o700 });
      release = await acquirePidLock(stateLockPath(settings.stateDir), "apt-ostreed", { bootIdFile: settings.bootIdFile });
    } catch (error) {
      // The agent is starting (it holds the lock before its socket listens): ask it again shortly.
      if (!(error instanceof LockHeldError) || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  try {
    return await runHere(settings, request);
  } finally {
    await release();
  }
}

async function runHere(settings: AgentSettings, request: ControlRequest): Promise<unknown> {
  const log = process.env.APT_OSTREE_LOG_LEVEL ? createLogger({ name: "apt-ostree" }) : silentLogger();
  useTrustedCa(settings.caFile);
  const trust = await loadDeviceTrust(settings, log);
  const agent = new Agent({
    settings,
    identity: await loadIdentity(settings.stateDir, settings.deviceId),
    trust,
    bootCounter: grubenvBootCounter(settings.grubenv),
    strategy: commandStrategy,
    publishReport: async () => {
      throw new Error("no broker link: the CLI works without the agent");
    },
    serverReached: async () => false,
    log,
  });
  await agent.load();
  try {
    return await handleControl(agent, settings, trust, request);
  } finally {
    await agent.idle();
    agent.stop();
  }
}
