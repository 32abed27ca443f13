/**
 * Pure: whether a command whose signature verified may be taken by this device, given what the
 * agent accepted before (kept in its state file), and what a withdrawal does to the update in
 * flight. The broker is not trusted: it can copy a signed command onto another device's topic,
 * and keep or replay any command it ever carried, so a signature alone does not make a command
 * this device's, nor current. (The manifest's channel is checked with the manifest:
 * shared/verify/manifest.ts.)
 */
import { AptOstreeError } from "../../shared/errors.ts";
import type { Command } from "../../shared/wire/command.ts";
import type { AgentState } from "./machine.ts";

/** The newest command the agent accepted, persisted before it acts on it. */
export interface AcceptedCommand {
  id: string;
  type: Command["type"];
  issued: string;
  /** An update's target commit: a withdrawal of `id` that does not name its commit stops this one. */
  commit?: string;
}

/** An update the server withdrew (paused or aborted): polling never installs its commit (poll.ts). */
export interface WithdrawnUpdate {
  id: string;
  commit: string;
  reason: WithdrawCommand["reason"];
}

/** Withdrawn updates kept in the state file, newest last. */
export const MAX_WITHDRAWN_KEPT = 16;

const COMMIT = /^[0-9a-f]{64}$/;

export type WithdrawCommand = Extract<Command, { type: "withdraw" }>;

/** A signed command for another device: copied from that device's topic. */
export class CommandForAnotherDeviceError extends AptOstreeError {
  constructor(command: Command, deviceId: string) {
    super("E_COMMAND_WRONG_DEVICE", `command ${command.id} (${command.type}) is for device ${command.device}, not this device (${deviceId}): refused`);
  }
}

/** A signed command older than one the agent already accepted: a stale retained copy or a replay. */
export class StaleCommandError extends AptOstreeError {
  constructor(command: Command, last: AcceptedCommand) {
    const earlier = last.type === "withdraw" ? `the withdrawal of ${last.id}` : `command ${last.id} (${last.type})`;
    const when = Date.parse(command.issued) < Date.parse(last.issued) ? "before" : "at the same time as";
    super("E_COMMAND_STALE", `command ${command.id} (${command.type}) was issued at ${command.issued}, ${when} ${earlier} issued at ${last.issued} that this device accepted: a stale or replayed copy`);
  }
}

/** Refuses a command that names another device than this one. */
export function checkTarget(command: Command, deviceId: string): void {
  if (command.device !== deviceId) throw new CommandForAnotherDeviceError(command, deviceId);
}

/**
 * Refuses a command issued before the last one accepted. The same command again (a retained
 * copy delivered on each reconnect) has the same time and passes; another command with the very
 * same time does not, so a withdrawal and the update it withdraws are never taken in either
 * order. A server re-publishing a command (a restart, a resumed rollout) signs it anew, later.
 */
export function checkFresh(command: Command, last: AcceptedCommand | undefined): void {
  if (!last) return;
  const issued = Date.parse(command.issued);
  const lastIssued = Date.parse(last.issued);
  if (issued > lastIssued) return;
  if (issued === lastIssued && command.id === last.id && command.type === last.type) return;
  throw new StaleCommandError(command, last);
}

/** What the state file keeps once `command` (checked by checkFresh) is taken: the newest command. */
export function acceptedAfter(command: Command, last: AcceptedCommand | undefined): AcceptedCommand | undefined {
  if (last && Date.parse(last.issued) >= Date.parse(command.issued)) return last;
  const commit = updateCommit(command);
  return { id: command.id, type: command.type, issued: command.issued, ...(commit ? { commit } : {}) };
}

/** The commit an update command's manifest names (signed with the command; verified again with the manifest). */
function updateCommit(command: Command): string | undefined {
  if (command.type !== "update") return undefined;
  const commit = command.manifest.manifest.commit;
  return typeof commit === "string" && COMMIT.test(commit) ? commit : undefined;
}

/**
 * What the state file keeps of withdrawn updates once `command` is taken: a withdrawal adds its
 * update's commit (named by the withdrawal, else known from the update command accepted or in
 * flight under the same id); an update command, newer than the withdrawal, for the same id or
 * commit (a resumed rollout, another rollout of that release) lifts it. One entry per commit, at
 * most MAX_WITHDRAWN_KEPT, the newest.
 */
export function withdrawnAfter(command: Command, kept: readonly WithdrawnUpdate[], last: AcceptedCommand | undefined, state: AgentState): WithdrawnUpdate[] {
  if (command.type === "update") {
    const commit = updateCommit(command);
    return kept.filter((w) => w.id !== command.id && w.commit !== commit);
  }
  if (command.type !== "withdraw") return [...kept];
  const inFlight = state.name !== "idle" && state.target.command === command.id ? state.target.commit : undefined;
  const commit = command.commit ?? (last?.id === command.id ? last.commit : undefined) ?? inFlight;
  if (!commit) return [...kept];
  const others = kept.filter((w) => w.id !== command.id && w.commit !== commit);
  return [...others, { id: command.id, commit, reason: command.reason }].slice(-MAX_WITHDRAWN_KEPT);
}

/** The channel names the commit of an update the server withdrew: polling does not install it. */
export class WithdrawnUpdateError extends AptOstreeError {
  constructor(withdrawn: WithdrawnUpdate) {
    super("E_UPDATE_WITHDRAWN", `the channel publishes ${withdrawn.commit}, the target of update ${withdrawn.id} that the server withdrew (rollout ${withdrawn.reason}): not installed by polling`);
  }
}

/** An abort stops the withdrawn update's download, as `apt-ostree cancel` would; a pause lets a started one go on. */
export function withdrawalCancels(state: AgentState, command: WithdrawCommand): boolean {
  return command.reason === "aborted" && state.name === "downloading" && state.target.command === command.id;
}
