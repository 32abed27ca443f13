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
}

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
  return { id: command.id, type: command.type, issued: command.issued };
}

/** An abort stops the withdrawn update's download, as `apt-ostree cancel` would; a pause lets a started one go on. */
export function withdrawalCancels(state: AgentState, command: WithdrawCommand): boolean {
  return command.reason === "aborted" && state.name === "downloading" && state.target.command === command.id;
}
