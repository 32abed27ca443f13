/**
 * What an operator does to a device besides accepting it. Reject: the record stays, with its
 * key, as `rejected` — its connections are refused from now on (whatever key it presents), its
 * current one is ended, and it cannot come back as pending under that id; accept undoes it.
 * Revoke: as reject, for good — the record says `revoked`, its key is barred under any id, accept
 * cannot undo it; only a new key (rekey) admits the device again. Rekey: the device's key is
 * replaced (its storage was), the old one barred, its connection ended. Delete: the device is
 * forgotten — record, history, rollout memberships and the retained MQTT messages on its topics
 * — and its connection ended; if it connects again it enrolls as a new pending device (a revoked
 * key stays barred). Preauthorize: a device the operator knows by id and key before it connects.
 */
import type { Logger } from "../../shared/log.ts";
import { deviceTopic, type DeviceTopicKind } from "../../shared/wire/topics.ts";
import type { RunningBroker } from "../mqtt/broker.ts";
import { AptOstreeError } from "../../shared/errors.ts";
import type { DeviceRecord, FleetStore } from "./store.ts";

/** An operation that the device's enrollment state does not allow, or a barred key (HTTP 409). */
export class EnrollmentConflictError extends AptOstreeError {
  constructor(message: string) {
    super("E_ENROLLMENT_CONFLICT", message);
  }
}

export interface DeviceAdminOptions {
  store: FleetStore;
  /** Ends connections and clears retained messages (an empty retained payload, MQTT 3.1.1 §3.3.1.3). */
  broker: Pick<RunningBroker, "publish" | "disconnect">;
  prefix: string;
  log: Logger;
  now?: () => Date;
}

/** Every topic of a device that may hold a retained message: the server's command, the agent's online flag, and what a device retained on its own. */
const RETAINED_KINDS: DeviceTopicKind[] = ["cmd", "online", "state", "hello"];

export class DeviceAdmin {
  constructor(private readonly options: DeviceAdminOptions) {}

  /** Throws DeviceNotFoundError for an unknown id. */
  async reject(id: string): Promise<DeviceRecord> {
    if ((await this.options.store.getDevice(id))?.enrollment === "revoked") throw new EnrollmentConflictError(`device '${id}' is already revoked, which is stronger than rejected`);
    const device = await this.options.store.rejectDevice(id, this.now());
    const disconnected = this.options.broker.disconnect?.(id) ?? false;
    this.options.log.warn({ event: "device.rejected", deviceId: id, disconnected }, `rejected device ${id}${disconnected ? " and ended its connection" : ""}`);
    return device;
  }

  /**
   * Admits `id` at its first connection with exactly `publicKey`, in the operator's `groups`.
   * Replaces a pending record (whoever enrolled under that id first) or an earlier
   * preauthorization; refuses a device already accepted, rejected or revoked (rekey changes its
   * key) and a barred key.
   */
  async preauthorize(id: string, publicKey: string, groups: string[]): Promise<DeviceRecord> {
    const existing = await this.options.store.getDevice(id);
    if (existing && existing.enrollment !== "pending" && existing.enrollment !== "preauthorized") {
      throw new EnrollmentConflictError(`device '${id}' is already ${existing.enrollment}; 'device rekey ${id} --key PUB' gives it another key`);
    }
    await this.refuseBarredKey(publicKey);
    const device = await this.options.store.preauthorizeDevice(id, publicKey, groups, this.now());
    // A pending device connected under this id with some key: it is ended and must come back with the named one.
    const disconnected = existing ? (this.options.broker.disconnect?.(id) ?? false) : false;
    this.options.log.warn({ event: "device.preauthorized", deviceId: id, groups, replaced: existing?.enrollment ?? null, disconnected }, `preauthorized device ${id}${existing ? ` (replacing its ${existing.enrollment} record)` : ""}`);
    return device;
  }

  /** Accepts a pending, preauthorized or rejected device; a revoked one needs a new key (rekey). Throws DeviceNotFoundError. */
  async accept(id: string): Promise<DeviceRecord> {
    if ((await this.options.store.getDevice(id))?.enrollment === "revoked") throw new EnrollmentConflictError(`device '${id}' is revoked and its key barred; 'device rekey ${id} --key PUB' admits it with a new key`);
    const device = await this.options.store.acceptDevice(id, this.now());
    this.options.log.info({ event: "device.accepted", deviceId: id }, `accepted device ${id}`);
    return device;
  }

  /** Refuses the device for good and bars its key; ends its connection. Throws DeviceNotFoundError. */
  async revoke(id: string): Promise<DeviceRecord> {
    const device = await this.options.store.revokeDevice(id, this.now());
    const disconnected = this.options.broker.disconnect?.(id) ?? false;
    this.options.log.warn({ event: "device.revoked", deviceId: id, disconnected }, `revoked device ${id} and its key${disconnected ? "; ended its connection" : ""}`);
    return device;
  }

  /** Replaces the device's key (the old one is barred) and ends its connection; a revoked or rejected device is accepted with it. */
  async rekey(id: string, publicKey: string): Promise<DeviceRecord> {
    const existing = await this.options.store.getDevice(id);
    if (existing?.publicKey === publicKey) throw new EnrollmentConflictError(`device '${id}' already has this key`);
    if (existing?.enrollment === "pending") throw new EnrollmentConflictError(`device '${id}' is pending; accept it, or preauthorize it with the key it should have`);
    await this.refuseBarredKey(publicKey);
    const device = await this.options.store.rekeyDevice(id, publicKey, this.now());
    const disconnected = this.options.broker.disconnect?.(id) ?? false;
    this.options.log.warn({ event: "device.rekeyed", deviceId: id, disconnected }, `gave device ${id} a new key; the old one is refused from now on${disconnected ? "; ended its connection" : ""}`);
    return device;
  }

  /** Sets the groups rollouts select the device by (`group=`) and whose command topics it may read. */
  async setGroups(id: string, groups: string[]): Promise<DeviceRecord> {
    const device = await this.options.store.setDeviceGroups(id, groups, this.now());
    this.options.log.info({ event: "device.groups", deviceId: id, groups: device.groups }, `device ${id} is in ${device.groups.join(", ") || "no group"}`);
    return device;
  }

  private async refuseBarredKey(publicKey: string): Promise<void> {
    const barred = await this.options.store.revokedKey(publicKey);
    if (barred) throw new EnrollmentConflictError(`that key was ${barred.reason === "revoked" ? "revoked" : "replaced"} on device '${barred.deviceId}' at ${barred.revokedAt}; a barred key never comes back: give the device a new one`);
  }

  private now(): Date {
    return (this.options.now ?? (() => new Date()))();
  }

  /** Throws DeviceNotFoundError for an unknown id; returns the record as it was. */
  async remove(id: string): Promise<DeviceRecord> {
    const device = await this.options.store.deleteDevice(id);
    const disconnected = this.options.broker.disconnect?.(id) ?? false;
    for (const kind of RETAINED_KINDS) await this.options.broker.publish(deviceTopic(this.options.prefix, id, kind), "", true);
    this.options.log.warn({ event: "device.deleted", deviceId: id, disconnected }, `deleted device ${id}, its history and its retained messages`);
    return device;
  }
}
