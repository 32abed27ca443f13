/**
 * The agent's persistent record, `<stateDir>/state.json`: the machine's state, the report
 * counter and the newest command accepted, replaced atomically (write, fsync, rename, fsync the
 * directory) so a crash or power loss leaves either the old record or the new one.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AptOstreeError } from "../../shared/errors.ts";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import type { AcceptedCommand, WithdrawnUpdate } from "./command-check.ts";
import type { AgentState } from "./machine.ts";

export interface AgentRecord {
  state: AgentState;
  /**
   * A ceiling on the counters of reports signed so far: counters are handed out below it without
   * touching the disk, and the ceiling is raised (persisted) a block at a time. After a restart,
   * counting resumes at the ceiling, above anything sent (the server refuses replays).
   */
  reportCounter: number;
  /**
   * The newest command accepted from the server (command-check.ts): written before the agent acts
   * on it, so after a crash or a power cut an older command is still refused.
   */
  lastCommand?: AcceptedCommand;
  /** Updates the server withdrew, newest last (command-check.ts `withdrawnAfter`): never installed by polling. */
  withdrawn?: WithdrawnUpdate[];
  /**
   * Per ref, the highest sequence ever accepted (docs/trust.md, Anti-rollback): written once the
   * commit's image signature verified, before it can boot, so no lower one is taken after a
   * rollback, a crash or a power cut.
   */
  acceptedSequences?: Record<string, number>;
}

/** Refs whose accepted sequence is kept: a device follows one, a few over rebases. */
export const MAX_ACCEPTED_REFS = 16;

/** `sequences` with `ref` raised to `sequence`; the lowest entries of other refs go beyond MAX_ACCEPTED_REFS. */
export function withAcceptedSequence(sequences: Record<string, number> | undefined, ref: string, sequence: number): Record<string, number> {
  const previous = sequences && Object.hasOwn(sequences, ref) ? sequences[ref]! : 0;
  const others = Object.entries(sequences ?? {}).filter(([r]) => r !== ref).sort((a, b) => b[1] - a[1]).slice(0, MAX_ACCEPTED_REFS - 1);
  return Object.fromEntries([...others, [ref, Math.max(previous, sequence)]]);
}

const STATE_NAMES = new Set(["idle", "downloading", "staged", "rebooting", "verifying", "healthy", "rolled-back", "failed"]);

export class StateFileError extends AptOstreeError {
  constructor(message: string) {
    super("E_STATE_FILE", message);
  }
}

export function stateFilePath(stateDir: string): string {
  return join(stateDir, "state.json");
}

/** Held by whoever owns the state file: the agent for its lifetime, the CLI for one operation when no agent runs. */
export function stateLockPath(stateDir: string): string {
  return join(stateDir, "lock");
}

export async function readAgentRecord(stateDir: string): Promise<AgentRecord> {
  const path = stateFilePath(stateDir);
  const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw error;
  });
  if (text === null) return { state: { name: "idle" }, reportCounter: 0 };
  let record: AgentRecord;
  try {
    record = JSON.parse(text) as AgentRecord;
  } catch (error) {
    throw new StateFileError(`${path} is not JSON (${(error as Error).message}); move it away to start over from idle`);
  }
  if (!STATE_NAMES.has(record?.state?.name) || !Number.isInteger(record.reportCounter)) {
    throw new StateFileError(`${path} does not hold an agent state; move it away to start over from idle`);
  }
  const last = record.lastCommand;
  if (last !== undefined && (typeof last?.id !== "string" || typeof last.type !== "string" || typeof last.issued !== "string" || Number.isNaN(Date.parse(last.issued)))) {
    throw new StateFileError(`${path} holds a malformed lastCommand; move it away to start over from idle`);
  }
  const withdrawn = record.withdrawn;
  if (withdrawn !== undefined && (!Array.isArray(withdrawn) || !withdrawn.every((w) => typeof w?.id === "string" && typeof w.commit === "string" && typeof w.reason === "string"))) {
    throw new StateFileError(`${path} holds a malformed withdrawn list; move it away to start over from idle`);
  }
  const accepted = record.acceptedSequences;
  if (accepted !== undefined && (typeof accepted !== "object" || accepted === null || Array.isArray(accepted) || !Object.values(accepted).every((n) => Number.isSafeInteger(n) && n > 0))) {
    throw new StateFileError(`${path} holds malformed acceptedSequences; move it away to start over from idle`);
  }
  return record;
}

export async function writeAgentRecord(stateDir: string, record: AgentRecord): Promise<void> {
  await writeFileAtomic(stateFilePath(stateDir), `${JSON.stringify(record, null, 1)}\n`, 0o600);
}
