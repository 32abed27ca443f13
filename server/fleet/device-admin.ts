/**
 * What an operator does to a device besides accepting it. Reject: the record stays, with its
 * key, as `rejected` — its connections are refused from now on (whatever key it presents), its
 * current one is ended, and it cannot come back as pending under that id. Delete: the device is
 * forgotten — record, history, rollout memberships and the retained MQTT messages on its topics
 * — and its connection ended; if it connects again it enrolls as a new pending device.
 */
import type { Logger } from "../../shared/log.ts";
import { deviceTopic, type DeviceTopicKind } from "../../shared/wire/topics.ts";
import type { RunningBroker } from "../mqtt/broker.ts";
import type { DeviceRecord, FleetStore } from "./store.ts";

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
  reject(id: string): DeviceRecord {
    const device = this.options.store.rejectDevice(id, (this.options.now ?? (() => new Date()))());
    const disconnected = this.options.broker.disconnect?.(id) ?? false;
    this.options.log.warn({ event: "device.rejected", deviceId: id, disconnected }, `rejected device ${id}${disconnected ? " and ended its connection" : ""}`);
    return device;
  }

  /** Throws DeviceNotFoundError for an unknown id; returns the record as it was. */
  async remove(id: string): Promise<DeviceRecord> {
    const device = this.options.store.deleteDevice(id);
    const disconnected = this.options.broker.disconnect?.(id) ?? false;
    for (const kind of RETAINED_KINDS) await this.options.broker.publish(deviceTopic(this.options.prefix, id, kind), "", true);
    this.options.log.warn({ event: "device.deleted", deviceId: id, disconnected }, `deleted device ${id}, its history and its retained messages`);
    return device;
  }
}
