/**
 * The agent's update state machine (DESIGN.md 2.5), pure: `step(state, event)` returns the next
 * state and the effects to run, and throws on an event the state cannot take. agent.ts persists
 * the new state before it runs the effects (write-ahead), so a crash at any point resumes from a
 * state whose effects are safe to run again. Diagram: docs/agent.md.
 */
import type { HealthResult } from "../health/checks.ts";

export interface DeploymentRef {
  commit: string;
  version: string;
}

/** What an update command asks for, after its signature and manifest were verified. */
export interface UpdateTarget {
  /** The command id (the rollout id); a repeated id is answered, never redone. */
  command: string;
  ref: string;
  commit: string;
  version: string;
  sequence: number;
  /** The deployment booted when the command arrived: where a fallback lands. */
  from: DeploymentRef;
  /** The signed manifest as received, verified again before it is used. */
  manifest: unknown;
  /** The repo the (signed) command named, a static host apart from the server; absent: the device's own. */
  repo?: string;
  /** Asked for on the device (`apt-ostree upgrade`): stays staged until asked to reboot, whatever the strategy. */
  manual?: boolean;
  /** Times this update's staged deployment was lost before a shutdown wrote it (power cuts). */
  lostStages?: number;
}

/** A staged deployment lost this many times in a row is a shutdown that never writes it, not bad luck. */
export const MAX_LOST_STAGES = 3;

export type AgentState =
  | { name: "idle" }
  /**
   * `attempt` counts the tries the update's own failures spent (at most MAX_STAGE_ATTEMPTS);
   * `waiting` is set while the device's surroundings fail it (the network away, /var full): those
   * tries are retried for as long as it lasts and counted apart, for the backoff.
   */
  | { name: "downloading"; target: UpdateTarget; attempt: number; waiting?: { error: string; times: number } }
  | { name: "staged"; target: UpdateTarget }
  /** `bootId`: the boot in which the reboot was asked for; a start in the same boot means it has not happened yet. */
  | { name: "rebooting"; target: UpdateTarget; bootId: string }
  | { name: "verifying"; target: UpdateTarget; bootId: string; failedChecks: HealthResult[] }
  | { name: "healthy"; target: UpdateTarget; health: HealthResult[] }
  | { name: "rolled-back"; target: UpdateTarget; reason: string; health: HealthResult[] }
  | { name: "failed"; target: UpdateTarget; error: string };

export type StateName = AgentState["name"];

export type AgentEvent =
  | { type: "command"; target: UpdateTarget }
  /**
   * The agent started: which commit the system booted, the kernel's boot id, and the commits of
   * every deployment ostree lists now, staged included (absent when unknown: then a deployment
   * the state names is taken to exist).
   */
  | { type: "started"; bootedCommit: string; bootId: string; deployedCommits?: string[]; abortedCommands?: string[] }
  | { type: "stage-succeeded" }
  /** The operator cancelled an update that was still downloading. */
  | { type: "cancelled" }
  /** The deployment list changed outside the agent (`apt-ostree rollback`, `cleanup -p`). */
  | { type: "deployments-changed"; deployedCommits: string[] }
  /** Bytes flow again after a wait: the next outage starts its backoff afresh and is reported again. */
  | { type: "download-progressed" }
  /** `transient`: the surroundings failed (network, space), not the update: retried without spending an attempt. */
  | { type: "stage-failed"; error: string; retryable: boolean; transient?: boolean }
  /** The reboot strategy says now (immediately, in the window, or on the server's command). */
  | { type: "reboot-allowed"; bootId: string }
  | { type: "health-checked"; results: HealthResult[] };

export type AgentEffect =
  | { kind: "report" }
  /** Download, apply, verify and deploy the target; `delayMs` before starting (retry backoff). */
  /** `waits`: the downloading state's `waiting.times` this try answers (0 when not waiting). */
  | { kind: "stage"; target: UpdateTarget; attempt: number; waits?: number; delayMs: number }
  | { kind: "ask-reboot-strategy" }
  /** Reboot; `arm`: first arm the boot counter (a new deployment's first boot, not a retry after a failed check). */
  | { kind: "reboot"; arm: boolean }
  | { kind: "run-health-checks" }
  /** Clear the boot counter: this boot is good (or, after a fallback, the fallback is now the default). */
  | { kind: "bless" }
  /** Remove the deployment that failed so the fallback stays the default. */
  | { kind: "make-rollback-permanent"; badCommit: string }
  /** Remove the update's downloaded delta files: it failed for good, so nothing resumes them. */
  | { kind: "discard-downloads" }
  | { kind: "log"; level: "info" | "warn"; message: string };

export interface Transition {
  state: AgentState;
  effects: AgentEffect[];
}

export const MAX_STAGE_ATTEMPTS = 5;

export class IllegalTransitionError extends Error {
  constructor(state: StateName, event: AgentEvent["type"]) {
    super(`the agent cannot take '${event}' while ${state}`);
  }
}

/** Backoff before stage attempt `attempt` (1-based): 0, 10 s, 20 s, 40 s, 80 s, capped at 5 min. */
export function stageBackoffMs(attempt: number): number {
  return attempt <= 1 ? 0 : Math.min(300_000, 10_000 * 2 ** (attempt - 2));
}

/** Backoff after the `times`th failure the surroundings caused in a row: 10 s, 20 s, ... capped at 5 min. */
export function waitBackoffMs(times: number): number {
  return Math.min(300_000, 10_000 * 2 ** Math.max(0, times - 1));
}

export type BusyState = Extract<AgentState, { name: "downloading" | "staged" | "rebooting" | "verifying" }>;

/** An update is in flight: another one waits until this one ended. */
export function isBusy(state: AgentState): state is BusyState {
  return state.name === "downloading" || state.name === "staged" || state.name === "rebooting" || state.name === "verifying";
}

export function targetOf(state: AgentState): UpdateTarget | null {
  return state.name === "idle" ? null : state.target;
}

export function step(state: AgentState, event: AgentEvent): Transition {
  switch (event.type) {
    case "command":
      return onCommand(state, event.target);
    case "started":
      return onStarted(state, event.bootedCommit, event.bootId, event.deployedCommits, event.abortedCommands ?? []);
    case "stage-succeeded":
      if (state.name !== "downloading") throw new IllegalTransitionError(state.name, event.type);
      return { state: { name: "staged", target: state.target }, effects: state.target.manual ? [{ kind: "report" }] : [{ kind: "report" }, { kind: "ask-reboot-strategy" }] };
    case "download-progressed":
      if (state.name !== "downloading" || !state.waiting) return { state, effects: [] };
      return { state: { name: "downloading", target: state.target, attempt: state.attempt }, effects: [] };
    case "stage-failed": {
      if (state.name !== "downloading") throw new IllegalTransitionError(state.name, event.type);
      if (event.transient) {
        const waiting = { error: event.error, times: (state.waiting?.times ?? 0) + 1 };
        const delayMs = waitBackoffMs(waiting.times);
        return {
          state: { ...state, waiting },
          effects: [
            { kind: "log", level: "warn", message: `update ${state.target.version} waits (${event.error}); trying again in ${delayMs / 1000} s` },
            { kind: "stage", target: state.target, attempt: state.attempt, waits: waiting.times, delayMs },
            // Reported once per outage, not at every try: the server shows why the device waits.
            ...(waiting.times === 1 ? [{ kind: "report" } as const] : []),
          ],
        };
      }
      if (event.retryable && state.attempt < MAX_STAGE_ATTEMPTS) {
        const attempt = state.attempt + 1;
        return {
          state: { name: "downloading", target: state.target, attempt },
          effects: [{ kind: "log", level: "warn", message: `update attempt ${state.attempt} failed (${event.error}); retrying` }, { kind: "stage", target: state.target, attempt, delayMs: stageBackoffMs(attempt) }],
        };
      }
      const tries = event.retryable ? ` after ${state.attempt} attempts` : "";
      return { state: { name: "failed", target: state.target, error: `${event.error}${tries}` }, effects: [{ kind: "report" }, { kind: "discard-downloads" }] };
    }
    case "deployments-changed":
      if (state.name === "staged" && !event.deployedCommits.includes(state.target.commit)) {
        return { state: { name: "idle" }, effects: [{ kind: "log", level: "info", message: `the staged ${state.target.version} was removed; back to idle` }, { kind: "report" }] };
      }
      return { state, effects: [] };
    case "cancelled":
      if (state.name !== "downloading") throw new IllegalTransitionError(state.name, event.type);
      return { state: { name: "idle" }, effects: [{ kind: "log", level: "info", message: `update ${state.target.command} to ${state.target.version} cancelled` }, { kind: "report" }] };
    case "reboot-allowed":
      if (state.name !== "staged") throw new IllegalTransitionError(state.name, event.type);
      return { state: { name: "rebooting", target: state.target, bootId: event.bootId }, effects: [{ kind: "report" }, { kind: "reboot", arm: true }] };
    case "health-checked": {
      if (state.name !== "verifying") throw new IllegalTransitionError(state.name, event.type);
      const failed = event.results.filter((r) => r.kind === "required" && !r.ok);
      if (failed.length === 0) return { state: { name: "healthy", target: state.target, health: event.results }, effects: [{ kind: "bless" }, { kind: "report" }] };
      // Not blessed: reboot, and let the boot counter decide between another try and the fallback.
      return {
        state: { ...state, failedChecks: failed },
        effects: [{ kind: "log", level: "warn", message: `required health check ${failed.map((r) => r.name).join(", ")} failed; rebooting` }, { kind: "report" }, { kind: "reboot", arm: false }],
      };
    }
  }
}

function onCommand(state: AgentState, target: UpdateTarget): Transition {
  const current = targetOf(state);
  if (current?.command === target.command) return { state, effects: [{ kind: "report" }] };
  if (isBusy(state)) {
    return { state, effects: [{ kind: "log", level: "warn", message: `ignoring command ${target.command}: still ${state.name} for ${current!.command}` }] };
  }
  if (target.commit === target.from.commit) {
    return { state: { name: "healthy", target, health: [] }, effects: [{ kind: "log", level: "info", message: `${target.version} is already booted` }, { kind: "report" }] };
  }
  // The stage effect only schedules the download, so listing it first lets it start while the
  // "downloading" report is still being built and sent.
  return { state: { name: "downloading", target, attempt: 1 }, effects: [{ kind: "stage", target, attempt: 1, delayMs: 0 }, { kind: "report" }] };
}

/**
 * What this boot's health check (apt-ostree-healthcheck.service, before boot-complete.target)
 * reports, or null while the agent does not know yet. `checkedThisRun`: this agent process
 * finished a round of health checks (a verifying state may still hold the previous try's
 * failures while this boot's checks run).
 */
export type BootVerdict =
  /** The new deployment passed its checks. */
  | { verdict: "healthy"; version: string }
  /** A required check failed: the boot must not be blessed (a reboot spends a try). */
  | { verdict: "failed"; version: string; failed: HealthResult[] }
  /** The bootloader fell back and the rollback was made permanent: this boot is the good one. */
  | { verdict: "rolled-back"; version: string; reason: string }
  /** No update is on trial in this boot. */
  | { verdict: "not-on-trial"; state: StateName };

export function bootVerdict(state: AgentState, checkedThisRun: boolean): BootVerdict | null {
  switch (state.name) {
    case "verifying":
      return checkedThisRun && state.failedChecks.length > 0 ? { verdict: "failed", version: state.target.version, failed: state.failedChecks } : null;
    case "rebooting":
      return null;
    case "healthy":
      return { verdict: "healthy", version: state.target.version };
    case "rolled-back":
      return { verdict: "rolled-back", version: state.target.from.version, reason: state.reason };
    default:
      return { verdict: "not-on-trial", state: state.name };
  }
}

/**
 * A power cut lost the staged deployment: stage the target again, unless the server aborted its
 * rollout meanwhile (then nothing is installed) or it was lost MAX_LOST_STAGES times (then a
 * shutdown that never writes it is the cause, and the update fails with that reason).
 */
function restageAfterLoss(target: UpdateTarget, why: string, first: AgentEffect[], aborted: boolean): Transition {
  if (aborted) return { state: { name: "idle" }, effects: [...first, { kind: "log", level: "warn", message: `${why}; its rollout was aborted, so it is not staged again` }, { kind: "report" }, { kind: "discard-downloads" }] };
  const lostStages = (target.lostStages ?? 0) + 1;
  if (lostStages >= MAX_LOST_STAGES) {
    const error = `${why}, ${lostStages} times in a row: the shutdown does not write the staged deployment (see ostree-finalize-staged.service in the journal)`;
    return { state: { name: "failed", target, error }, effects: [...first, { kind: "report" }, { kind: "discard-downloads" }] };
  }
  const again = { ...target, lostStages };
  return { state: { name: "downloading", target: again, attempt: 1 }, effects: [...first, { kind: "log", level: "warn", message: `${why}: staging ${target.version} again` }, { kind: "stage", target: again, attempt: 1, delayMs: 0 }, { kind: "report" }] };
}

/** After a (re)start: where did the boot land, and what was the agent doing? */
function onStarted(state: AgentState, booted: string, bootId: string, deployedCommits: string[] | undefined, abortedCommands: string[]): Transition {
  const deployed = (commit: string) => deployedCommits === undefined || deployedCommits.includes(commit);
  const restage = (target: UpdateTarget, why: string, first: AgentEffect[] = []) => restageAfterLoss(target, why, first, abortedCommands.includes(target.command));
  switch (state.name) {
    case "downloading":
      // Resume: the download continues where its files stopped.
      return { state, effects: [{ kind: "stage", target: state.target, attempt: state.attempt, waits: state.waiting?.times ?? 0, delayMs: 0 }, { kind: "report" }] };
    case "staged":
      // The staged deployment lives in /run until shutdown writes it: a power cut loses it.
      if (booted !== state.target.commit && !deployed(state.target.commit)) return restage(state.target, "the staged deployment was lost (the power went before a clean shutdown could write it)");
      // Restarted before the reboot: the strategy decides again. (A staged deployment is also
      // finalized by a clean shutdown for another reason: then it booted, and is checked.)
      if (booted !== state.target.commit) return { state, effects: state.target.manual ? [{ kind: "report" }] : [{ kind: "report" }, { kind: "ask-reboot-strategy" }] };
    // falls through
    case "rebooting":
    case "verifying": {
      const { target } = state;
      if (state.name !== "staged" && state.bootId === bootId) {
        // Restarted within the same boot: the reboot (or the checks) did not happen yet.
        const rebootPending = state.name === "rebooting" || state.failedChecks.length > 0;
        return { state, effects: [{ kind: "report" }, rebootPending ? { kind: "reboot", arm: state.name === "rebooting" } : { kind: "run-health-checks" }] };
      }
      if (booted === target.commit) return { state: { name: "verifying", target, bootId, failedChecks: state.name === "verifying" ? state.failedChecks : [] }, effects: [{ kind: "report" }, { kind: "run-health-checks" }] };
      // Back on the old commit with the new one nowhere: the power went before the shutdown wrote the
      // staged deployment, so it never booted and cannot have failed; the counter armed for it is spent on nothing.
      if (state.name === "rebooting" && booted === target.from.commit && !deployed(target.commit)) {
        return restage(target, `the power went before ${target.version} was written at shutdown; ${target.from.version} booted as before`, [{ kind: "bless" }]);
      }
      if (booted === target.from.commit) {
        const failed = state.name === "verifying" ? state.failedChecks : [];
        const why = failed.length > 0
          ? `required health check ${failed.map((r) => `${r.name} failed: ${r.output.trim() || "(no output)"}`).join("; ")}`
          : state.name === "verifying"
            ? `${target.version} booted but stopped before its health checks finished (a hang the watchdog reset, or a power loss); the bootloader fell back to ${target.from.version}`
            : `${target.version} did not boot; the bootloader fell back to ${target.from.version}`;
        return { state: { name: "rolled-back", target, reason: why, health: failed }, effects: [{ kind: "make-rollback-permanent", badCommit: target.commit }, { kind: "bless" }, { kind: "report" }] };
      }
      return { state: { name: "failed", target, error: `booted ${booted.slice(0, 12)}, which is neither ${target.version} nor ${target.from.version}` }, effects: [{ kind: "report" }] };
    }
    case "healthy":
      // Killed between persisting "healthy" and blessing: bless again (it is idempotent).
      return { state, effects: [{ kind: "bless" }, { kind: "report" }] };
    case "rolled-back":
      // Likewise for the undeploy of the bad deployment and clearing the spent counter.
      return { state, effects: [{ kind: "make-rollback-permanent", badCommit: state.target.commit }, { kind: "bless" }, { kind: "report" }] };
    default:
      return { state, effects: [{ kind: "report" }] };
  }
}
