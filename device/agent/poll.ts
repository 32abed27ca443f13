/**
 * While the broker is unreachable the agent still learns of updates: every `pollSeconds` it
 * fetches the channel's signed manifest over HTTP and, when it names another commit than the
 * booted one, takes it like a command whose id is derived from the commit (so repeated polls of
 * the same release are one update, answered, never redone). Never a commit whose update the
 * server withdrew (paused or aborted): the withdrawal is kept in the state file (command-check.ts).
 */
import { errorChain } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { AgentSettings } from "../config/settings.ts";
import { fetchChannelManifest, repoUrl } from "../update/channel.ts";
import type { Agent } from "./agent.ts";
import { WithdrawnUpdateError } from "./command-check.ts";
import { isBusy } from "./machine.ts";

export interface PollerOptions {
  agent: Agent;
  settings: Pick<AgentSettings, "server" | "repo" | "channel" | "ref" | "pollSeconds">;
  /** True while the MQTT link is up: then the server's commands drive updates. */
  connected: () => boolean;
  log: Logger;
}

export function pollId(commit: string): string {
  return `poll-${commit.slice(0, 16)}`;
}

/** One poll: returns what it did, for logs and tests. */
export async function pollOnce(options: PollerOptions): Promise<"connected" | "busy" | "current" | "withdrawn" | "taken" | "failed"> {
  const { agent, settings, log } = options;
  if (options.connected()) return "connected";
  const state = agent.state;
  if (isBusy(state)) return "busy";
  try {
    const booted = await agent.bootedDeployment();
    const ref = booted?.origin || settings.ref;
    const signed = await fetchChannelManifest(repoUrl(settings), settings.channel, ref);
    const commit = (signed as { manifest?: { commit?: unknown } })?.manifest?.commit;
    if (typeof commit !== "string" || commit === booted?.base) return "current";
    if (state.name !== "idle" && state.target.commit === commit) return "current";
    const withdrawn = agent.withdrawal(commit);
    if (withdrawn) {
      const refusal = new WithdrawnUpdateError(withdrawn);
      log.warn({ event: "agent.poll.refused", code: refusal.code, commit, command: withdrawn.id, reason: refusal.message }, `the broker is unreachable; ${refusal.message}`);
      return "withdrawn";
    }
    log.info({ event: "agent.poll.update", commit }, `the broker is unreachable; the channel publishes ${commit.slice(0, 12)}: taking it`);
    await agent.acceptManifest(pollId(commit), signed, { ref });
    return "taken";
  } catch (error) {
    log.warn({ event: "agent.poll.failed", err: error }, `polling ${settings.server} failed: ${errorChain(error)}`);
    return "failed";
  }
}

export function startPoller(options: PollerOptions): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    void pollOnce(options).finally(() => (running = false));
  }, options.settings.pollSeconds * 1000);
  return () => clearInterval(timer);
}
