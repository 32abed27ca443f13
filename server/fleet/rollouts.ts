/**
 * Runs rollouts: creation (select devices, cut waves), and a tick that applies `decide()` until
 * it says wait. All state is in the store, so a restarted server continues where it was. A
 * device's command is retained on its own command topic with the rollout id as command id: it
 * reaches devices that subscribe late, and a re-publish after a restart is the same command.
 * A signed withdrawal replaces it on the topic of every device that was sent it and did not
 * install it (timed out, failed, rolled back; the not started on a pause; all on an abort:
 * `withdrawalFor`), so a device that connects later does not start what was stopped.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AptOstreeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { signCommand } from "../../shared/wire/command.ts";
import { ManifestSchema, SignedManifestSchema, manifestPath, type SignedManifest } from "../../shared/wire/manifest.ts";
import type { Report } from "../../shared/wire/report.ts";
import { deviceTopic } from "../../shared/wire/topics.ts";
import type { Metrics } from "../http/metrics.ts";
import { coalesce } from "./coalesce.ts";
import { SOLE_INSTANCE, type RolloutCoordination } from "./coordination.ts";
import type { FleetStore, RolloutDeviceRecord, RolloutRecord, RolloutSelector } from "./store.ts";
import { FAILED_STATUSES, FINAL_STATUSES, assignWaves, decide, statusFromReport, withdrawalFor, type RolloutPlan, type RolloutState } from "./waves.ts";

export class RolloutError extends AptOstreeError {
  readonly status: number;
  constructor(status: number, code: string, message: string) {
    super(code, message);
    this.status = status;
  }
}

export interface CreateRolloutInput {
  ref: string;
  channel: string;
  /** Must be the version the channel publishes, when given. */
  version?: string;
  selector: RolloutSelector;
  plan: RolloutPlan;
}

export interface RolloutEngineOptions {
  store: FleetStore;
  repo: string;
  /** Signs commands; without it rollouts cannot be created. */
  key: Ed25519KeyPair | null;
  publish: (topic: string, payload: string, retain: boolean) => Promise<void>;
  prefix: string;
  log: Logger;
  /** Counts ticks (`aptostree_rollout_ticks_total`) and what asked for them. */
  metrics?: Metrics;
  /** Update commands send devices here for the repo (a static host, `serve --repo-url`); null or absent: each device's own setting. */
  repoUrl?: string | null;
  /** With other instances on the same store: who ticks, and the lock every step takes (default: this process alone). */
  coordination?: RolloutCoordination;
  now?: () => Date;
}

export class RolloutEngine {
  private readonly now: () => Date;
  private ticking: Promise<void> = Promise.resolve();
  private lastIssued = 0;
  private readonly coalescedTick: () => Promise<void>;
  private readonly tickRequests: (amount?: number) => void;
  private readonly coordination: RolloutCoordination;
  private readonly leaderGauge: (value: number) => void;
  /** Whether this instance drove the rollouts at its last tick: a new leader first takes over (`takeOver`). */
  private leading = false;
  private takingOver = false;
  private leaseEpoch = 0;

  constructor(private readonly options: RolloutEngineOptions) {
    this.now = options.now ?? (() => new Date());
    this.coordination = options.coordination ?? SOLE_INSTANCE;
    const leaderGauge = options.metrics?.gauge("aptostree_rollout_leader", "1 while this instance drives the rollouts (holds the lease), else 0");
    this.leaderGauge = leaderGauge ? (value) => leaderGauge(value) : () => undefined;
    const ticksRun = options.metrics?.counter("aptostree_rollout_ticks_total", "Rollout ticks run (requests coalesced: one running, one waiting)") ?? (() => undefined);
    this.tickRequests = options.metrics?.counter("aptostree_rollout_tick_requests_total", "Rollout ticks asked for (timer, reports, reconnects, API)") ?? (() => undefined);
    this.coalescedTick = coalesce(async () => {
      try {
        // Only the lease holder ticks; the others do not even take the step lock.
        if (!(await this.lead())) return;
        await this.serialised(() => {
          ticksRun(1);
          return this.tickOnce();
        });
      } catch (error) {
        options.log.error({ event: "rollout.tick.error", err: error }, "rollout tick failed");
      }
    });
  }

  /** Whether this instance drives the rollouts now; one that just took the lease takes over at its next step. */
  private async lead(): Promise<boolean> {
    const leading = await this.coordination.isLeader();
    if (leading !== this.leading) this.leaderGauge(leading ? 1 : 0);
    // Newly the leader, or the lease was lost and taken again between two ticks: take over first.
    if (leading && this.coordination.epoch !== this.leaseEpoch) this.takingOver = true;
    this.leaseEpoch = this.coordination.epoch;
    this.leading = leading;
    return leading;
  }

  async create(input: CreateRolloutInput): Promise<RolloutRecord> {
    const { store } = this.options;
    if (!this.options.key) throw new RolloutError(409, "E_NO_SIGNING_KEY", "the server has no signing key to sign commands; start serve with --key FILE");
    const manifest = await this.readManifest(input.ref, input.channel);
    if (input.version !== undefined && input.version !== manifest.manifest.version) {
      throw new RolloutError(409, "E_VERSION_NOT_PUBLISHED", `channel ${input.channel} publishes ${input.ref} version ${manifest.manifest.version}, not ${input.version}; publish it first`);
    }
    // Under the rollout lock: two instances creating overlapping rollouts at once take turns.
    const rollout = await this.serialised(() => this.insert(input, manifest));
    // The first wave goes out in the tick asked for here, not before the answer: the API returns
    // as soon as the rollout is stored, whatever the wave's size (and on any instance).
    void this.tick();
    return (await store.getRollout(rollout.id))!;
  }

  private async insert(input: CreateRolloutInput, manifest: SignedManifest): Promise<RolloutRecord> {
    const { store } = this.options;
    const selected = (await store.listDevices("accepted")).filter((d) => input.selector.devices.includes(d.id) || d.groups.some((g) => input.selector.groups.includes(g)) || d.tags.some((t) => input.selector.tags.includes(t)));
    const unknown = input.selector.devices.filter((id) => !selected.some((d) => d.id === id));
    if (unknown.length > 0) throw new RolloutError(400, "E_UNKNOWN_DEVICE", `no accepted device ${unknown.map((id) => `'${id}'`).join(", ")}`);
    if (selected.length === 0) throw new RolloutError(400, "E_NO_DEVICES", "the selector matches no accepted device");
    const busy = (await store.listRollouts()).filter((r) => r.progress.state === "running" || r.progress.state === "paused");
    for (const other of busy) {
      const overlap = (await store.rolloutDevices(other.id)).filter((m) => selected.some((d) => d.id === m.deviceId) && !FINAL_STATUSES.has(m.status));
      if (overlap.length > 0) {
        throw new RolloutError(409, "E_DEVICE_BUSY", `${overlap.length} selected device(s) (${overlap.slice(0, 3).map((m) => m.deviceId).join(", ")}) are still in rollout ${other.id}; abort it or wait`);
      }
    }
    const now = this.now();
    const id = `r-${now.toISOString().slice(0, 10).replace(/-/g, "")}-${randomBytes(3).toString("hex")}`;
    const waves = assignWaves(id, selected.map((d) => d.id), input.plan.waves);
    const rollout: RolloutRecord = {
      id,
      ref: input.ref,
      channel: input.channel,
      version: manifest.manifest.version,
      commit: manifest.manifest.commit,
      selector: input.selector,
      plan: input.plan,
      progress: { state: "running", currentWave: 0, waveStartedAt: now.toISOString(), waveCompletedAt: null },
      pauseReason: null,
      createdAt: now.toISOString(),
      updatedAt: now.toISOString(),
    };
    await store.createRollout(rollout, [...waves.entries()].map(([deviceId, wave]) => ({ deviceId, wave })));
    this.options.log.info({ event: "rollout.created", rollout: id, devices: selected.length, version: rollout.version }, `rollout ${id}: ${rollout.ref} ${rollout.version} to ${selected.length} devices`);
    return rollout;
  }

  /**
   * Serialised and coalesced: one tick at a time, at most one more waiting, however many ask
   * (timer, reports, reconnects, API); a caller's tick starts after its call, so it sees its change.
   */
  tick(): Promise<void> {
    this.tickRequests(1);
    return this.coalescedTick();
  }

  /** Runs `task` after every tick and state change already queued, so publishes never cross. */
  private serialised<T>(task: () => Promise<T>): Promise<T> {
    const run = this.ticking.then(() => this.coordination.withRolloutLock(task));
    this.ticking = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** A command's `issued`: later than any this engine signed before, so devices can order them. */
  private issuedNow(): string {
    const now = Math.max(this.now().getTime(), this.lastIssued + 1);
    this.lastIssued = now;
    return new Date(now).toISOString();
  }

  /** Starts driving rollouts where the store says they are: the first tick, which takes over if this instance leads. */
  async resume(): Promise<void> {
    await this.tick();
  }

  /**
   * After a restart, or when this instance takes the lease from one that died: re-publish the identical command (same id) to every device of a running
   * rollout already commanded but not final. A lost publish gets delivered, and a device whose
   * reports were lost with the old process answers a repeated id by reporting where it stands.
   * And re-publish every withdrawal due (`withdrawalFor`), in any rollout, to each device whose
   * topic its latest commanded rollout holds: the process may have died between recording a
   * failure, pause or abort and publishing the withdrawal (lost with an external broker).
   */
  private async takeOver(): Promise<void> {
    const { store } = this.options;
    // Newest first: a device a later rollout commanded keeps that rollout's command.
    const commandedLater = new Set<string>();
    for (const rollout of (await store.listRollouts()).reverse()) {
      const members = await store.rolloutDevices(rollout.id);
      await this.withdrawDue(rollout, rollout.progress.state, members, commandedLater);
      if (rollout.progress.state === "running") {
        await this.publishCommands(rollout, members.filter((m) => m.status === "sent" || m.status === "in-progress").map((m) => m.deviceId));
      }
      for (const member of members) if (member.sentAt !== null) commandedLater.add(member.deviceId);
    }
  }

  async onReport(report: Report): Promise<void> {
    if (!report.command) return;
    const rollout = await this.options.store.getRollout(report.command);
    if (!rollout) return;
    const member = await this.options.store.rolloutDevice(rollout.id, report.deviceId);
    if (!member || FINAL_STATUSES.has(member.status)) return;
    const status = statusFromReport(report.state, report.booted?.commit, rollout.commit);
    if (status === null || status === member.status) return;
    const detail = report.rolledBack?.reason ?? report.error ?? null;
    // Not over a final status another report (or instance) stored meanwhile.
    if (!(await this.options.store.setRolloutDeviceStatus(rollout.id, report.deviceId, status, detail, this.now()))) return;
    if (FAILED_STATUSES.has(status)) {
      await this.serialised(async () => {
        const current = (await this.options.store.getRollout(rollout.id))!;
        await this.withdrawDue(current, current.progress.state, [(await this.options.store.rolloutDevice(rollout.id, report.deviceId))!]);
      });
    }
    await this.tick();
  }

  /**
   * Pause, resume, abort; serialised with the ticks, so no command goes out after the withdrawal
   * that follows a pause or an abort. Pause withdraws the command of the devices that have not
   * started (still `sent`) and resume sends it to them again; abort withdraws it from every
   * device that has it and is not healthy (one still downloading stops). Both also withdraw it
   * again from the failed and rolled-back (`withdrawalFor`).
   */
  async setState(id: string, action: "pause" | "resume" | "abort"): Promise<RolloutRecord> {
    const { store } = this.options;
    await this.serialised(async () => {
      const rollout = await store.getRollout(id);
      if (!rollout) throw new RolloutError(404, "E_ROLLOUT_NOT_FOUND", `no rollout '${id}'`);
      const from = rollout.progress.state;
      const allowed = { pause: ["running"], resume: ["paused"], abort: ["running", "paused"] }[action];
      if (!allowed.includes(from)) throw new RolloutError(409, "E_ROLLOUT_STATE", `cannot ${action} rollout ${id}: it is ${from}`);
      const state = action === "pause" ? "paused" : action === "resume" ? "running" : "aborted";
      const reason = action === "pause" ? "paused by the operator" : action === "abort" ? "aborted by the operator" : null;
      await store.updateRollout(id, { ...rollout.progress, state }, reason, this.now());
      this.options.log.info({ event: `rollout.${action}`, rollout: id }, `rollout ${id}: ${action}`);
      const members = await store.rolloutDevices(id);
      if (action === "resume") await this.publishCommands(rollout, members.filter((m) => m.status === "sent").map((m) => m.deviceId));
      else await this.withdrawDue(rollout, state, members);
    });
    await this.tick();
    return (await store.getRollout(id))!;
  }

  private async tickOnce(): Promise<void> {
    const { store } = this.options;
    if (this.takingOver) {
      await this.takeOver();
      this.takingOver = false;
    }
    // Reads the running rollouts' members only (one indexed join each), never the whole registry.
    for (const rollout of await store.listRollouts("running")) {
      for (let step = 0; step < 100; step++) {
        const current = (await store.getRollout(rollout.id))!;
        const members = await store.rolloutMembers(rollout.id);
        const now = this.now();
        const decision = decide(current.plan, current.progress, members, now);
        if (decision.kind === "wait") break;
        await this.apply(current, decision, now);
      }
    }
  }

  private async apply(rollout: RolloutRecord, decision: Exclude<ReturnType<typeof decide>, { kind: "wait" }>, now: Date): Promise<void> {
    const { store, log } = this.options;
    switch (decision.kind) {
      case "send":
        await store.markRolloutDevicesSent(rollout.id, decision.deviceIds, now);
        await this.publishCommands(rollout, decision.deviceIds);
        return;
      case "time-out":
        // Only those still not final: a final report may have landed since the members were read.
        const timedOut = new Set<string>();
        for (const deviceId of decision.deviceIds) if (await store.setRolloutDeviceStatus(rollout.id, deviceId, "failed", `no final report within ${rollout.plan.waveTimeoutSeconds} s`, now)) timedOut.add(deviceId);
        await this.withdrawDue(rollout, "running", (await store.rolloutDevices(rollout.id)).filter((m) => timedOut.has(m.deviceId)));
        return;
      case "pause":
        await store.updateRollout(rollout.id, { ...rollout.progress, state: "paused" }, decision.reason, now);
        log.warn({ event: "rollout.paused", rollout: rollout.id, reason: decision.reason }, `rollout ${rollout.id} paused: ${decision.reason}`);
        await this.withdrawDue(rollout, "paused", await store.rolloutDevices(rollout.id));
        return;
      case "wave-completed":
        await store.updateRollout(rollout.id, { ...rollout.progress, waveCompletedAt: now.toISOString() }, null, now);
        return;
      case "next-wave":
        await store.updateRollout(rollout.id, { ...rollout.progress, currentWave: decision.wave, waveStartedAt: now.toISOString(), waveCompletedAt: null }, null, now);
        log.info({ event: "rollout.wave", rollout: rollout.id, wave: decision.wave }, `rollout ${rollout.id}: wave ${decision.wave + 1}`);
        return;
      case "complete":
        await store.updateRollout(rollout.id, { ...rollout.progress, state: "completed" }, null, now);
        log.info({ event: "rollout.completed", rollout: rollout.id }, `rollout ${rollout.id} completed`);
        return;
    }
  }

  /**
   * The rollout's update command, signed for each device (it names the device, so a copy on
   * another device's topic is refused there) and retained on that device's topic.
   */
  private async publishCommands(rollout: RolloutRecord, deviceIds: string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    const manifest = await this.readManifest(rollout.ref, rollout.channel);
    if (manifest.manifest.commit !== rollout.commit) {
      for (const deviceId of deviceIds) {
        await this.options.store.setRolloutDeviceStatus(rollout.id, deviceId, "failed", `channel ${rollout.channel} no longer publishes ${rollout.version}`, this.now());
      }
      return;
    }
    const issued = this.issuedNow();
    for (const device of deviceIds) {
      const payload = signCommand({ type: "update", id: rollout.id, device, issued, rollout: rollout.id, ...(this.options.repoUrl ? { repo: this.options.repoUrl } : {}), manifest }, [this.options.key!]);
      await this.options.publish(deviceTopic(this.options.prefix, device, "cmd"), payload, true);
    }
  }

  /**
   * Publishes the withdrawal each member is due in a rollout in `state` (`withdrawalFor`), except
   * to devices a later rollout has commanded since: their topic holds that rollout's command.
   * Idempotent: a withdrawal again is a newer copy of the same one, which the device takes as before.
   */
  private async withdrawDue(rollout: RolloutRecord, state: RolloutState, members: RolloutDeviceRecord[], commandedSince?: Set<string>): Promise<void> {
    const commandedLater = commandedSince ?? (await this.commandedAfter(rollout.id));
    const due = { paused: [] as string[], aborted: [] as string[] };
    for (const member of members) {
      const reason = withdrawalFor(state, member);
      if (reason !== null && !commandedLater.has(member.deviceId)) due[reason].push(member.deviceId);
    }
    await this.withdrawCommands(rollout, due.paused, "paused");
    await this.withdrawCommands(rollout, due.aborted, "aborted");
  }

  /** Devices that rollouts created after `id` have sent their command to. */
  private async commandedAfter(id: string): Promise<Set<string>> {
    const { store } = this.options;
    const rollouts = await store.listRollouts();
    const commanded = new Set<string>();
    for (const later of rollouts.slice(rollouts.findIndex((r) => r.id === id) + 1)) {
      for (const member of await store.rolloutDevices(later.id)) if (member.sentAt !== null) commanded.add(member.deviceId);
    }
    return commanded;
  }

  /**
   * Replaces the retained update command on each device's topic with a signed withdrawal (a
   * retained message replaces the one before it, MQTT 3.1.1 §3.3.1.3). Not an empty retained
   * payload, which clears the topic too: anyone on the broker's side could forge that, while a
   * signed, newer withdrawal also makes the device refuse the update if a stale copy of it
   * arrives later. (A hostile broker can still withhold the withdrawal, as it can any message.)
   */
  private async withdrawCommands(rollout: RolloutRecord, deviceIds: string[], reason: "paused" | "aborted"): Promise<void> {
    if (deviceIds.length === 0) return;
    if (!this.options.key) {
      this.options.log.warn({ event: "rollout.withdraw.unsigned", rollout: rollout.id, devices: deviceIds.length }, `rollout ${rollout.id}: cannot withdraw the command from ${deviceIds.length} device(s) without a signing key; start serve with --key FILE`);
      return;
    }
    const issued = this.issuedNow();
    for (const device of deviceIds) {
      const payload = signCommand({ type: "withdraw", id: rollout.id, device, issued, reason, commit: rollout.commit }, [this.options.key!]);
      await this.options.publish(deviceTopic(this.options.prefix, device, "cmd"), payload, true);
    }
    this.options.log.info({ event: "rollout.withdrawn", rollout: rollout.id, reason, devices: deviceIds.length }, `rollout ${rollout.id}: command withdrawn from ${deviceIds.length} device(s) (${reason})`);
  }

  private async readManifest(ref: string, channel: string): Promise<SignedManifest> {
    const text = await readFile(join(this.options.repo, manifestPath(channel, ref)), "utf8").catch(() => null);
    if (text === null) throw new RolloutError(404, "E_NOT_PUBLISHED", `channel ${channel} publishes nothing for ${ref}; run publish first`);
    const envelope = SignedManifestSchema.parse(JSON.parse(text));
    return { manifest: ManifestSchema.parse(envelope.manifest), signatures: envelope.signatures };
  }
}
