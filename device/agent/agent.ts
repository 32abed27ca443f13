/**
 * The agent's actor: feeds events to the pure machine (machine.ts) one at a time, persists the
 * new state before running its effects, and turns effects into I/O (download and deploy, reboot,
 * health checks, boot counter, reports). Long effects run in the background and come back as
 * events, so the queue never waits on itself.
 */
import { RESERVE_BYTES, SpaceReserve } from "./space-reserve.ts";
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { AptOstreeError, errorChain } from "../../shared/errors.ts";
import { runProgram } from "../../shared/process/run.ts";
import type { Logger } from "../../shared/log.ts";
import { runOstree } from "../../shared/ostree/exec.ts";
import { verifySignedManifest } from "../../shared/verify/manifest.ts";
import { CommandRejectedError, verifyCommand, type Command } from "../../shared/wire/command.ts";
import type { Report } from "../../shared/wire/report.ts";
import type { AgentSettings } from "../config/settings.ts";
import type { BootCounter } from "../health/boot-counter.ts";
import { runHealthChecks, systemdUnitsCheck, type BuiltinCheck } from "../health/checks.ts";
import type { RebootStrategy } from "../strategy/index.ts";
import { sysrootRepo, type Deployment } from "../sysroot/deployments.ts";
import { removeStaleLayerWork } from "../layering/assemble.ts";
import { discardDownloads, stageUpdate, StageError } from "../update/stage.ts";
import { httpClientCodeCache, loadHttpClient } from "../update/load-http-client.ts";
import { repoUrl } from "../update/channel.ts";
import type { DeviceIdentity } from "./identity.ts";
import { layeringDirs, layeringServerSource } from "../ops/layer.ts";
import { bootVerdict, isBusy, step, type AgentEffect, type AgentEvent, type AgentState, type BootVerdict, type UpdateTarget } from "./machine.ts";
import { readAgentRecord, withAcceptedSequence, writeAgentRecord, type AgentRecord } from "./state-file.ts";
import { acceptedAfter, checkFresh, checkTarget, withdrawalCancels, withdrawnAfter, type AcceptedCommand, type WithdrawCommand, type WithdrawnUpdate } from "./command-check.ts";
import { buildReport, reportBase } from "./report.ts";
import { Reporter } from "./reporter.ts";
import { DeviceFacts } from "./device-facts.ts";
import type { DeviceTrust } from "../trust/device-trust.ts";

export const AGENT_VERSION = "0.1.0";

/** Commands waiting while an earlier one is taken: beyond this many the oldest waiting is dropped (logged). */
export const MAX_PENDING_COMMANDS = 4;

/** A burst of commands or polls walks the server's roots once, not once each. */
export const TRUST_REFRESH_MS = 10_000;

/** A state file that could not be written (/var full) is tried again after this long. */
export const STATE_WRITE_RETRY_MS = 30_000;
/** The boot unit that clears the counter after boot-complete.target (device/units). */
const BLESS_UNIT = "apt-ostree-bless.service";
const BLESS_WAIT_MS = 15 * 60_000;

/** Refusals a newer root may cure: a key it names, or a fresh expiry. */
const NEEDS_NEWER_ROOT = new Set(["E_MANIFEST_UNKNOWN_KEY", "E_ROOT_EXPIRED", "E_SIGNATURE_THRESHOLD"]);

export interface AgentOptions {
  settings: AgentSettings;
  identity: DeviceIdentity;
  /** The keys each role signs with (docs/trust.md): commands, manifests and commits are checked against theirs. */
  trust: DeviceTrust;
  bootCounter: BootCounter;
  strategy: RebootStrategy;
  /** Sends a signed report; rejects when the link is down (the report is re-sent on reconnect). */
  publishReport: (payload: string) => Promise<void>;
  /** Whether the server was reached during this boot (a built-in health check). */
  serverReached: () => Promise<boolean>;
  log: Logger;
  now?: () => Date;
  /** How long a state write that failed (a full disk) waits before it is tried again (default STATE_WRITE_RETRY_MS). */
  stateWriteRetryMs?: number;
}

export class Agent {
  private record: AgentRecord = { state: { name: "idle" }, reportCounter: 0 };
  /** waitFor()'s checks, run after every persisted state change. */
  private readonly stateWatchers = new Set<() => void>();
  private queue: Promise<void> = Promise.resolve();
  /** Commands waiting to be checked and taken, one at a time, in the order they arrived; at most MAX_PENDING_COMMANDS. */
  private readonly pendingCommands: Array<{ payload: Buffer | string; done: () => void; failed: (error: unknown) => void }> = [];
  private takingCommands = false;
  /** sha256 of the payload of the last command taken: the same bytes again are dropped before any parse or signature check. */
  private lastTakenDigest: Buffer | null = null;
  /** When the last walk of the server's roots ended (ms since epoch): walks are at most one per TRUST_REFRESH_MS. */
  private trustCheckedAt = -Infinity;
  /** Writes of the state file, one at a time: the last one to land holds the newest record. */
  private writing: Promise<void> = Promise.resolve();
  private progress: { bytes: number; total: number } | null = null;
  private lastProgressSent = 0;
  private lastHealth: Report["health"];
  /** A round of health checks finished in this process (so in this boot). */
  private checkedThisRun = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;
  private stageAbort: AbortController | null = null;
  /** Room for the state file on a full disk (space-reserve.ts); made again once there is room. */
  private readonly spaceReserve: SpaceReserve;
  private spaceReserveUsed = false;
  private spaceReserveChecked = Number.NEGATIVE_INFINITY;
  /** Wakes the state writes that wait for space (stop() ends them). */
  private readonly waitingWrites = new Set<() => void>();
  /** A download-progressed event is queued: one per resumed download is enough. */
  private clearingWait = false;
  private readonly facts: DeviceFacts;
  private readonly reporter: Reporter;
  private readonly now: () => Date;

  constructor(private readonly options: AgentOptions) {
    this.now = options.now ?? (() => new Date());
    this.spaceReserve = new SpaceReserve(options.settings.stateDir);
    this.facts = new DeviceFacts(options.settings);
    this.reporter = new Reporter({
      key: options.identity.key,
      publish: options.publishReport,
      ceiling: () => this.record.reportCounter,
      raiseCeiling: async (to) => {
        const before = this.record.reportCounter;
        this.record = { ...this.record, reportCounter: to };
        try {
          await this.persist();
        } catch (error) {
          // Counters above the persisted ceiling would be handed out again after a restart.
          this.record = { ...this.record, reportCounter: before };
          throw error;
        }
      },
      now: this.now,
    });
  }

  get state(): AgentState {
    return this.record.state;
  }

  /** Makes the space reserve again once it was used and the disk has room (checked at most once a minute). */
  private keepSpaceReserve(): void {
    if (!this.spaceReserveUsed || performance.now() - this.spaceReserveChecked < 60_000) return;
    this.spaceReserveChecked = performance.now();
    void this.spaceReserve.ensure().then(
      (made) => {
        if (!made) return;
        this.spaceReserveUsed = false;
        this.options.log.info({ event: "agent.space-reserve.made" }, "the disk has room again: the agent's space reserve is back");
      },
      (error: unknown) => this.options.log.warn({ event: "agent.space-reserve.failed", err: error }, `cannot make the space reserve: ${errorChain(error)}`),
    );
  }

  /** Makes the space reserve if it is missing (at start); a failure is logged, not fatal. */
  async reserveSpace(): Promise<void> {
    this.spaceReserveUsed = !(await this.spaceReserve.ensure().catch(() => false));
  }

  /** Reads the persisted state only (the CLI working without a running agent). */
  async load(): Promise<void> {
    this.record = await readAgentRecord(this.options.settings.stateDir);
    // Whoever loads the state holds its lock: no layering of another process can be running.
    await removeStaleLayerWork(sysrootRepo(this.options.settings.sysroot), this.options.log);
  }

  /** The package layering in progress (device/ops/layer.ts): staging an update waits for it. */
  private layeringRun: Promise<unknown> = Promise.resolve();

  runLayering<T>(task: () => Promise<T>): Promise<T> {
    const run = task();
    this.layeringRun = run.catch(() => undefined);
    return run;
  }

  /** Reads the persisted state and tells the machine where this boot landed. */
  async start(): Promise<void> {
    await this.load();
    const booted = await this.facts.booted();
    if (!booted) {
      this.options.log.warn({ event: "agent.not-booted", sysroot: this.options.settings.sysroot }, `no booted deployment found (none is ${this.options.settings.rootDir}); updates will deploy from scratch`);
    }
    const deployedCommits = (await this.facts.deployments()).map((d) => d.base);
    const abortedCommands = (this.record.withdrawn ?? []).filter((w) => w.reason === "aborted").map((w) => w.id);
    await this.dispatch({ type: "started", bootedCommit: booted?.base ?? "", bootId: await this.facts.bootId(), deployedCommits, abortedCommands });
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    // A state write waiting for space gives up now: the file keeps the state before it.
    for (const wake of this.waitingWrites) wake();
  }

  /** Resolves once every queued event and its effects ran (for tests and clean shutdown). */
  idle(): Promise<void> {
    return this.queue;
  }

  dispatch(event: AgentEvent): Promise<void> {
    this.queue = this.queue.then(() => this.handle(event)).catch((error: unknown) => {
      this.options.log.error({ event: "agent.event.error", err: error, agentEvent: event.type }, `cannot handle ${event.type}: ${errorChain(error)}`);
    });
    return this.queue;
  }

  /** A message on the command topic: verified and checked here, one at a time, then acted on. */
  onCommand(payload: Buffer | string): Promise<void> {
    return new Promise<void>((done, failed) => {
      // A broker can send faster than commands are taken: keep the newest few.
      if (this.pendingCommands.length >= MAX_PENDING_COMMANDS) {
        this.pendingCommands.shift()!.done();
        this.options.log.warn({ event: "agent.command.dropped", pending: MAX_PENDING_COMMANDS }, `${MAX_PENDING_COMMANDS} commands already wait to be taken: dropped the oldest waiting`);
      }
      this.pendingCommands.push({ payload, done, failed });
      void this.takeCommands();
    });
  }

  private async takeCommands(): Promise<void> {
    if (this.takingCommands) return;
    this.takingCommands = true;
    try {
      for (let next = this.pendingCommands.shift(); next; next = this.pendingCommands.shift()) {
        await this.takeCommand(next.payload).then(next.done, next.failed);
      }
    } finally {
      this.takingCommands = false;
    }
  }

  private async takeCommand(payload: Buffer | string): Promise<void> {
    const { trust, log } = this.options;
    // A cleared retained message (MQTT 3.1.1 §3.3.1.3: an empty retained payload), not a command.
    if (payload.length === 0) return log.debug({ event: "agent.command.cleared" }, "the retained command was cleared");
    // The very command taken last, again (a broker's replay, a retained copy on reconnect): it was
    // answered when taken; costs a hash, not a parse, two signature checks and a signed report.
    const digest = createHash("sha256").update(payload).digest();
    if (this.lastTakenDigest?.equals(digest)) return log.debug({ event: "agent.command.replayed" }, "the command taken last, again: dropped");
    let command: Command;
    try {
      // A revoked command key must be known before a command it signed is believed.
      await this.refreshTrust();
      command = await this.withFreshTrust(() => verifyCommand(payload, trust.signers("command")));
      checkTarget(command, this.options.identity.deviceId);
      checkFresh(command, this.record.lastCommand);
    } catch (error) {
      // Logged, not reported: a broker can cause each of these (unsigned, for another device,
      // stale), and a failed report naming the command would count against its rollout.
      log.warn({ event: "agent.command.rejected", code: (error as AptOstreeError).code, reason: (error as Error).message }, `refused a command: ${(error as Error).message}`);
      return;
    }
    // Persisted before anything is done for it: after a power cut an older command stays refused.
    await this.rememberCommand(acceptedAfter(command, this.record.lastCommand), withdrawnAfter(command, this.record.withdrawn ?? [], this.record.lastCommand, this.state), command.id);
    this.lastTakenDigest = digest;
    switch (command.type) {
      case "withdraw":
        return this.withdraw(command);
      case "reboot":
        await this.rebootNow();
        return;
      case "update":
        await this.acceptManifest(command.id, command.manifest, { ...(command.rollout === undefined ? {} : { rollout: command.rollout }), ...(command.repo === undefined ? {} : { repo: command.repo }) }).catch(() => undefined);
        return;
      default:
        return;
    }
  }

  private async rememberCommand(accepted: AcceptedCommand | undefined, withdrawn: WithdrawnUpdate[], id: string): Promise<void> {
    const kept = this.record.withdrawn ?? [];
    const sameWithdrawn = withdrawn.length === kept.length && withdrawn.every((w, i) => w === kept[i]);
    if (accepted === this.record.lastCommand && sameWithdrawn) return;
    this.record = { ...this.record, lastCommand: accepted, ...(withdrawn.length > 0 || this.record.withdrawn ? { withdrawn } : {}) };
    await this.persistPatiently(`command ${id}`);
  }

  /**
   * Write-ahead, whatever it takes: a state file that cannot be written (/var full, a failing
   * disk) is written again every STATE_WRITE_RETRY_MS until it is, and nothing after it in the
   * event queue or the command queue runs meanwhile, so no effect runs ahead of its state and
   * events keep their order. A crash meanwhile resumes from the file, where this step never happened.
   */
  private async persistPatiently(what: string): Promise<void> {
    for (let tries = 1; ; tries++) {
      try {
        await this.persist();
        if (tries > 1) this.options.log.warn({ event: "agent.state.written", what, tries }, `the state file for ${what} is written (try ${tries})`);
        this.keepSpaceReserve();
        return;
      } catch (error) {
        if (this.stopped) throw error;
        const code = (error as NodeJS.ErrnoException).code;
        if ((code === "ENOSPC" || code === "EDQUOT") && (await this.spaceReserve.release().catch(() => false))) {
          this.spaceReserveUsed = true;
          this.options.log.warn({ event: "agent.space-reserve.used", what }, `the disk is full: gave back the agent's ${RESERVE_BYTES / 1024} KiB reserve to write the state file for ${what}`);
          continue;
        }
        if (tries === 1 || tries % 10 === 0) {
          this.options.log.error({ event: "agent.state.write-failed", err: error, what, tries }, `cannot write the state file for ${what} (${errorChain(error)}); waiting, trying again every ${this.stateWriteRetryMs / 1000} s`);
        }
        await new Promise<void>((resolve) => {
          const wake = () => {
            clearTimeout(timer);
            this.waitingWrites.delete(wake);
            resolve();
          };
          const timer = setTimeout(wake, this.stateWriteRetryMs);
          this.waitingWrites.add(wake);
        });
        if (this.stopped) throw new AptOstreeError("E_AGENT_STOPPED", `the agent stopped while the state file for ${what} waited to be written`, { cause: error });
      }
    }
  }

  /** The withdrawal that stops `commit`, if the server withdrew an update to it (poll.ts refuses it). */
  withdrawal(commit: string): WithdrawnUpdate | undefined {
    return this.record.withdrawn?.find((w) => w.commit === commit);
  }

  /** The server withdrew update command `id` (its rollout was paused or aborted). */
  private async withdraw(command: WithdrawCommand): Promise<void> {
    const state = this.state;
    const cancels = withdrawalCancels(state, command);
    this.options.log.info(
      { event: "agent.command.withdrawn", command: command.id, reason: command.reason, state: state.name, cancels },
      `the server withdrew update ${command.id} (rollout ${command.reason})${cancels ? "; stopping its download" : ""}`,
    );
    if (cancels) await this.cancel();
  }

  /**
   * Learns newer roots (a rotated or revoked key) before believing a signature. A server that
   * cannot be reached or serves a root that does not verify leaves the trusted root as it was:
   * logged, and the signature is then checked against what the device already trusts.
   */
  private async refreshTrust(force = false): Promise<boolean> {
    const now = Date.now();
    if (!force && now - this.trustCheckedAt < TRUST_REFRESH_MS) return false;
    this.trustCheckedAt = now;
    try {
      return await this.options.trust.refresh();
    } catch (error) {
      this.options.log.warn({ event: "agent.trust.refresh-failed", code: (error as AptOstreeError).code, reason: (error as Error).message }, `cannot update the trusted root: ${(error as Error).message}`);
      return false;
    }
  }

  /**
   * `check`, and once more after a walk of the roots if it failed for want of a key or a fresh
   * root: a rotation published moments after the last walk is still found.
   */
  private async withFreshTrust<T>(check: () => T): Promise<T> {
    try {
      return check();
    } catch (error) {
      if (!NEEDS_NEWER_ROOT.has((error as AptOstreeError).code) && !(error instanceof CommandRejectedError && error.reason === "unknown-key")) throw error;
      if (!(await this.refreshTrust(true))) throw error;
      return check();
    }
  }

  /**
   * An update to a signed manifest (from a command, or from the CLI with a local id): verified
   * against the pinned keys, the booted sequence and this device (its architecture, channel and
   * ref), then fed to the machine. A refusal is reported as the command's failed outcome and
   * changes nothing.
   */
  async acceptManifest(id: string, signedManifest: unknown, options: { ref?: string; manual?: boolean; rollout?: string; repo?: string } = {}): Promise<void> {
    const { settings, trust, log } = this.options;
    const booted = await this.facts.booted();
    try {
      // Signatures keep the content honest anywhere; a plain-HTTP host would still show an eavesdropper what the device installs.
      if (options.repo?.startsWith("http://") && settings.server.startsWith("https://")) throw new Error(`the command names a plain http:// repo (${options.repo}) while the server is https://`);
      const bootedSequence = booted ? await this.facts.sequenceOf(booted.base) : undefined;
      await this.refreshTrust();
      const ref = options.ref ?? (booted?.origin || settings.ref);
      const manifest = await this.withFreshTrust(() => verifySignedManifest(signedManifest, {
        signers: trust.signers("release"),
        now: this.now(),
        architecture: settings.architecture,
        channel: settings.channel,
        ref,
        bootedSequence,
        acceptedSequence: this.acceptedSequence(ref),
        // A signed downgrade only from a rollout's command to this device (docs/trust.md).
        downgradeAllowed: options.rollout !== undefined,
      }));
      const target: UpdateTarget = {
        command: id,
        ref: manifest.ref,
        commit: manifest.commit,
        version: manifest.version,
        sequence: manifest.sequence,
        from: { commit: booted?.base ?? "", version: booted?.version ?? "" },
        manifest: signedManifest,
        ...(options.manual ? { manual: true } : {}),
        ...(options.repo ? { repo: options.repo } : {}),
      };
      // Overlaps undici's load with persisting and reporting "downloading".
      void loadHttpClient().then(
        () => log.info({ event: "agent.http-client.loaded", codeCache: httpClientCodeCache() }, "HTTP client loaded"),
        () => undefined,
      );
      await this.dispatch({ type: "command", target });
      return;
    } catch (error) {
      log.warn({ event: "agent.manifest.rejected", command: id, reason: (error as Error).message }, `refused update ${id}: ${(error as Error).message}`);
      await this.sendReport({ ...(await this.reportBase()), state: "failed", command: id, error: `refused: ${(error as Error).message}` });
      throw error;
    }
  }

  /** The highest sequence accepted for `ref` (anti-rollback), if any. */
  acceptedSequence(ref: string): number | undefined {
    const sequences = this.record.acceptedSequences;
    return sequences && Object.hasOwn(sequences, ref) ? sequences[ref] : undefined;
  }

  /**
   * Anti-rollback: the highest sequence accepted for `ref`, persisted once its commit verified
   * (so a release key alone cannot raise it) and before the deployment can boot.
   */
  private async rememberAccepted(ref: string, sequence: number): Promise<void> {
    if ((this.acceptedSequence(ref) ?? 0) >= sequence) return;
    this.record = { ...this.record, acceptedSequences: withAcceptedSequence(this.record.acceptedSequences, ref, sequence) };
    // Patient: a failure here after a deploy would call a staged update failed (and it would boot unwatched).
    await this.persistPatiently(`the accepted sequence ${sequence} of ${ref}`);
  }

  /** After the CLI changed the deployment list: a staged update that is gone no longer is one. */
  async reconcile(): Promise<void> {
    this.facts.forget();
    await this.dispatch({ type: "deployments-changed", deployedCommits: (await this.facts.deployments()).map((d) => d.base) });
  }

  private get stateWriteRetryMs(): number {
    return this.options.stateWriteRetryMs ?? STATE_WRITE_RETRY_MS;
  }

  get log(): Logger {
    return this.options.log;
  }

  /**
   * `install --reboot` and the like: reboot into the deployment layering just made, with the boot
   * counter armed so GRUB falls back to the current one if it cannot boot. Not while an update runs.
   */
  async rebootForLayering(): Promise<boolean> {
    if (isBusy(this.state)) return false;
    const { settings, log } = this.options;
    if (settings.bootUnits) await this.untilBootBlessed();
    // An update the server sent meanwhile goes on; the layered deployment boots with it later.
    if (isBusy(this.state)) return false;
    await this.options.bootCounter.arm(settings.bootTries);
    log.warn({ event: "agent.reboot", command: settings.rebootCommand, reason: "layering" }, "rebooting into the layered deployment");
    const result = await runProgram(settings.rebootCommand[0]!, settings.rebootCommand.slice(1));
    if (result.exitCode !== 0) throw new AptOstreeError("E_REBOOT", `${settings.rebootCommand.join(" ")} exited ${result.exitCode ?? result.signal}: ${result.stderr}`);
    return true;
  }

  /** The operator's (or the server's) go-ahead for a staged update. */
  async rebootNow(): Promise<boolean> {
    if (this.state.name !== "staged") return false;
    await this.dispatch({ type: "reboot-allowed", bootId: await this.facts.bootId() });
    return true;
  }

  /** Stops an update that is still downloading; the device stays on what it runs. */
  async cancel(): Promise<boolean> {
    if (this.state.name !== "downloading") return false;
    this.stageAbort?.abort();
    await this.dispatch({ type: "cancelled" });
    return true;
  }

  /** Resolves with the state once `done` holds (checked after each event) and its effects ran; rejects after `timeoutMs`. */
  async waitFor(done: (state: AgentState) => boolean, timeoutMs: number): Promise<AgentState> {
    const deadline = Date.now() + timeoutMs;
    if (!done(this.state)) {
      await new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!done(this.state)) return;
          stop();
          resolve();
        };
        const timer = setTimeout(() => {
          stop();
          reject(new AptOstreeError("E_TIMEOUT", `timed out while ${this.state.name}`));
        }, timeoutMs);
        const stop = () => {
          clearTimeout(timer);
          this.stateWatchers.delete(check);
        };
        this.stateWatchers.add(check);
      });
    }
    await this.idleWithin(deadline - Date.now());
    return this.state;
  }

  /** This boot's verdict for the health-check unit, once the agent knows it; rejects after `timeoutMs`. */
  async waitForBootVerdict(timeoutMs: number): Promise<BootVerdict> {
    const deadline = Date.now() + timeoutMs;
    // What is queued first (the start's checks); bounded, as a state write held by a full disk holds the queue.
    await this.idleWithin(timeoutMs);
    const state = await this.waitFor((s) => bootVerdict(s, this.checkedThisRun) !== null, Math.max(0, deadline - Date.now()));
    return bootVerdict(state, this.checkedThisRun)!;
  }

  /** idle(), given up after `ms` with E_TIMEOUT. */
  private idleWithin(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AptOstreeError("E_TIMEOUT", `timed out while ${this.state.name} (the agent is still busy)`)), Math.max(0, ms));
    });
    return Promise.race([this.idle(), late]).finally(() => clearTimeout(timer));
  }

  /** Re-sends the report that could not be published while the link was down. */
  async onConnected(): Promise<void> {
    // Otherwise say where we stand (the server marks us online and learns our deployments).
    if (!(await this.reporter.flush())) await this.enqueueEffect({ kind: "report" });
  }

  /** Writes the record as it is when the write starts; one write at a time. */
  private persist(): Promise<void> {
    const write = this.writing.then(() => writeAgentRecord(this.options.settings.stateDir, this.record));
    this.writing = write.catch(() => undefined);
    return write;
  }

  /** Runs an effect in the event queue, after what is already queued (no state change). */
  private enqueueEffect(effect: AgentEffect): Promise<void> {
    this.queue = this.queue.then(() => this.effect(effect)).catch((error: unknown) => {
      this.options.log.error({ event: "agent.effect.error", err: error, effect: effect.kind }, `cannot ${effect.kind}: ${errorChain(error)}`);
    });
    return this.queue;
  }

  private async handle(event: AgentEvent): Promise<void> {
    const transition = step(this.record.state, event);
    if (transition.state !== this.record.state) {
      this.record = { ...this.record, state: transition.state };
      await this.persistPatiently(`${event.type} -> ${transition.state.name}`);
      for (const watcher of this.stateWatchers) watcher();
      this.options.log.info({ event: "agent.state", state: transition.state.name, on: event.type }, `${event.type} -> ${transition.state.name}`);
    }
    for (const effect of transition.effects) await this.effect(effect);
  }

  private async effect(effect: AgentEffect): Promise<void> {
    const { settings, log } = this.options;
    switch (effect.kind) {
      case "log":
        log[effect.level]({ event: "agent.note" }, effect.message);
        return;
      case "report":
        // A report that cannot be sent (its counter ceiling not written) must not stop the effects after it (a reboot).
        return this.sendReport(await this.stateReport()).catch((error: unknown) => {
          log.warn({ event: "agent.report.failed", err: error }, `cannot send a report: ${errorChain(error)}`);
        });
      case "stage":
        this.later(effect.delayMs, () => this.runStage(effect.target, effect.attempt, effect.waits ?? 0));
        return;
      case "ask-reboot-strategy": {
        if (this.state.name !== "staged") return;
        const now = this.now();
        if (this.options.strategy.canRebootNow(now)) {
          await this.handle({ type: "reboot-allowed", bootId: await this.facts.bootId() });
          return;
        }
        const retry = this.options.strategy.retryInMs(now);
        log.info({ event: "agent.reboot.deferred", strategy: this.options.strategy.label, retryInMs: retry }, `staged; reboot deferred by the ${this.options.strategy.label} strategy`);
        if (retry !== null) this.later(retry, () => this.enqueueEffect({ kind: "ask-reboot-strategy" }));
        return;
      }
      case "reboot": {
        if (!effect.arm && settings.bootUnits) {
          log.warn({ event: "agent.reboot.left-to-unit" }, "a required health check failed; apt-ostree-reboot-on-failure.service reboots");
          return;
        }
        if (effect.arm) {
          if (settings.bootUnits) await this.untilBootBlessed();
          await this.options.bootCounter.arm(settings.bootTries);
        }
        log.warn({ event: "agent.reboot", command: settings.rebootCommand }, "rebooting");
        const result = await runProgram(settings.rebootCommand[0]!, settings.rebootCommand.slice(1));
        if (result.exitCode !== 0) throw new AptOstreeError("E_REBOOT", `${settings.rebootCommand.join(" ")} exited ${result.exitCode ?? result.signal}: ${result.stderr}`);
        return;
      }
      case "run-health-checks":
        this.later(0, async () => {
          const builtins: BuiltinCheck[] = [{ name: "server-reachable", kind: "required", run: async () => ((await this.options.serverReached()) ? { ok: true, output: "reached the server" } : { ok: false, output: `the server was not reached within ${settings.serverReachTimeoutSeconds} s` }) }];
          if (settings.checkSystemdUnits) builtins.push(systemdUnitsCheck);
          const results = await runHealthChecks({ dir: settings.healthDir, timeoutMs: settings.healthTimeoutSeconds * 1000, builtins });
          this.lastHealth = results;
          this.checkedThisRun = true;
          await this.dispatch({ type: "health-checked", results });
        });
        return;
      case "bless":
        if (settings.bootUnits) {
          log.info({ event: "agent.bless.left-to-unit" }, "boot good; apt-ostree-bless.service clears the boot counter after boot-complete.target");
          return;
        }
        await this.options.bootCounter.bless();
        return;
      case "make-rollback-permanent":
        await this.undeploy(effect.badCommit);
        return;
      case "discard-downloads":
        await discardDownloads(join(settings.stateDir, "downloads"));
        return;
    }
  }

  /**
   * With the boot units, apt-ostree-bless.service clears the counter once this boot completes:
   * arming it before that (an update staged right after boot) would be undone, and the new
   * deployment would boot with no tries counted. Waits for the unit to have run (bounded: a boot
   * that never completes blesses nothing, and the counter is then armed anyway).
   */
  private async untilBootBlessed(): Promise<void> {
    // The unit's own condition: off a booted ostree system it never runs, so there is nothing to wait for.
    if (!(await stat("/run/ostree-booted").catch(() => null))) return;
    const deadline = this.now().getTime() + BLESS_WAIT_MS;
    for (;;) {
      const result = await runProgram("systemctl", ["is-active", BLESS_UNIT]).catch(() => null);
      const state = result?.stdout.trim();
      if (!result || state === "active" || state === "failed") return;
      if (this.now().getTime() > deadline) {
        this.options.log.warn({ event: "agent.reboot.bless-wait-timeout", unit: BLESS_UNIT, state }, `${BLESS_UNIT} has not run in this boot (${state}); arming the boot counter anyway`);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  private async runStage(target: UpdateTarget, attempt: number, waits: number): Promise<void> {
    const { settings, log } = this.options;
    // A retry's timer outlives a cancel or a withdrawal in its backoff: it stages only if the
    // agent is still downloading this try of this update.
    const state = this.state;
    if (state.name !== "downloading" || state.target.command !== target.command || state.attempt !== attempt || (state.waiting?.times ?? 0) !== waits) return;
    const abort = new AbortController();
    this.stageAbort = abort;
    // The "downloading" report just went out: the first progress report waits its second too.
    this.lastProgressSent = Date.now();
    try {
      // The commit is checked against the image keys of the newest root: a rotation of the image
      // key just before this update is found here (one walk per attempt; the download needs the server anyway).
      await this.refreshTrust(true);
      // Verified again: the kept copy comes from the state file on disk.
      const verified = verifySignedManifest(target.manifest, { signers: this.options.trust.signers("release"), now: this.now(), architecture: settings.architecture, ref: target.ref });
      if (verified.commit !== target.commit) throw new StageError("the kept manifest names another commit than the update", false);
      // A package layering still building finishes first; it then sees the update and deploys nothing.
      await this.layeringRun;
      if (abort.signal.aborted || !this.stillTaking(target, ["downloading"])) return;
      const staged = await stageUpdate({
        sysroot: settings.sysroot,
        rootDir: settings.rootDir,
        osname: settings.osname,
        repoUrl: target.repo ?? repoUrl(settings),
        manifest: verified,
        deployments: await this.facts.deployments(),
        imageSigners: this.options.trust.signers("image"),
        downloadDir: join(settings.stateDir, "downloads"),
        stage: settings.stage,
        stallMs: settings.downloadStallSeconds * 1000,
        onProgress: (bytes, total) => this.onProgress(bytes, total),
        signal: abort.signal,
        log,
        layering: { aptEtc: settings.layeringAptDir, stateDir: layeringDirs(settings).stateDir, serverSource: layeringServerSource(settings, target.repo ?? repoUrl(settings)) },
      });
      this.progress = null;
      this.facts.assume(staged.deployments);
      // Accepted: the image key signed this commit with this sequence; nothing lower is taken from now on.
      await this.rememberAccepted(verified.ref, verified.sequence);
      // A cancel or a withdrawal during the deploy (ostree's deploy cannot be interrupted) left
      // the agent idle: the deployment must not stay to boot with no counter armed and no one watching it.
      if (!this.stillTaking(target, ["downloading"])) return await this.dropStaged(target);
      await this.dispatch({ type: "stage-succeeded" });
      // A cancel queued behind the stage's writes (a full disk holds the queue) came first.
      if (!this.stillTaking(target, ["staged", "rebooting"])) return await this.dropStaged(target);
      this.later(0, () => this.confirmDeployments(staged.deployments));
    } catch (error) {
      this.progress = null;
      this.facts.forget();
      if (abort.signal.aborted) return;
      const retryable = error instanceof StageError ? error.retryable : false;
      const transient = error instanceof StageError ? error.transient : false;
      await this.dispatch({ type: "stage-failed", error: errorChain(error), retryable, transient });
    }
  }

  /** The agent is still taking `target`, in one of `names`: no cancel, withdrawal or other command came meanwhile. */
  private stillTaking(target: UpdateTarget, names: Array<AgentState["name"]>): boolean {
    const state = this.state;
    return names.includes(state.name) && "target" in state && state.target.command === target.command;
  }

  private async dropStaged(target: UpdateTarget): Promise<void> {
    this.options.log.warn({ event: "agent.stage.dropped", commit: target.commit, state: this.state.name }, `update ${target.version} was stopped while ostree deployed it; removing its deployment`);
    await this.undeploy(target.commit);
  }

  /** Reads the list ostree has after a deploy; if it is not the one the "staged" report assumed, reports again. */
  private async confirmDeployments(assumed: Deployment[]): Promise<void> {
    this.facts.forget();
    const actual = await this.facts.deployments();
    if (JSON.stringify(actual) === JSON.stringify(assumed)) return;
    this.options.log.warn({ event: "agent.deployments.differ", assumed: assumed.map((d) => d.id), actual: actual.map((d) => d.id) }, "ostree lists other deployments than the deploy implied; reporting them again");
    await this.enqueueEffect({ kind: "report" });
  }

  private onProgress(bytes: number, total: number): void {
    this.progress = { bytes, total };
    const state = this.state;
    if (state.name === "downloading" && state.waiting && !this.clearingWait) {
      this.clearingWait = true;
      void this.dispatch({ type: "download-progressed" }).finally(() => (this.clearingWait = false));
    }
    const now = Date.now();
    if (now - this.lastProgressSent < 1000 && bytes < total) return;
    this.lastProgressSent = now;
    void this.stateReport().then((report) => this.sendReport(report)).catch(() => undefined);
  }

  private async undeploy(badCommit: string): Promise<void> {
    const deployments = await this.facts.deployments();
    const index = deployments.findIndex((d) => d.base === badCommit && !d.booted);
    if (index < 0) return;
    await runOstree(["admin", "undeploy", `--sysroot=${this.options.settings.sysroot}`, String(index)]);
    this.facts.forget();
    this.options.log.warn({ event: "agent.rollback.permanent", commit: badCommit }, `removed the failed deployment ${badCommit.slice(0, 12)}`);
  }

  private async stateReport(): Promise<Report> {
    return buildReport(await this.reportBase(), this.record.state, { progress: this.progress, health: this.lastHealth });
  }

  private async reportBase(): Promise<Report> {
    return reportBase(await this.facts.deployments(), this.options.settings, this.options.identity.deviceId, AGENT_VERSION, this.now());
  }

  private sendReport(report: Report): Promise<void> {
    return this.reporter.send(report);
  }

  bootedDeployment(): Promise<Deployment | null> {
    return this.facts.booted();
  }

  private later(ms: number, task: () => Promise<void>): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) void task().catch((error: unknown) => this.options.log.error({ event: "agent.task.error", err: error }, errorChain(error)));
    }, ms);
    this.timers.add(timer);
  }
}
