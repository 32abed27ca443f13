/**
 * Tells listeners (the dashboard's live event stream) that the fleet changed: a store decorator
 * that notifies after every write, so reports, enrollment, online flags and rollout progress all
 * reach the dashboard without hooks in each writer.
 */
import type { DeviceRecord, FleetStore } from "./store.ts";

export type FleetChange = { kind: "device"; id: string } | { kind: "rollout"; id: string };
export type FleetListener = (change: FleetChange) => void;

export class FleetChanges {
  private readonly listeners = new Set<FleetListener>();

  subscribe(listener: FleetListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Tells every listener of this process (an instance on a shared database tells every instance's: changes-postgres.ts). */
  notify(change: FleetChange): void {
    this.deliver(change);
  }

  protected deliver(change: FleetChange): void {
    for (const listener of this.listeners) listener(change);
  }

  async close(): Promise<void> {}
}

/** `store`, with `changes` told after each write (reads pass through untouched). */
export function notifyingStore(store: FleetStore, changes: FleetChanges): FleetStore {
  const device = (id: string) => changes.notify({ kind: "device", id });
  const rollout = (id: string) => changes.notify({ kind: "rollout", id });
  /** A device write: the record it returns, and listeners told of that device. */
  const deviceWrite = async (id: string, write: Promise<DeviceRecord>) => {
    const record = await write;
    device(id);
    return record;
  };
  return {
    createRollout: async (record, members) => (await store.createRollout(record, members), rollout(record.id)),
    getRollout: (id) => store.getRollout(id),
    listRollouts: (state) => store.listRollouts(state),
    updateRollout: async (id, progress, pauseReason, now) => (await store.updateRollout(id, progress, pauseReason, now), rollout(id)),
    rolloutDevices: (id) => store.rolloutDevices(id),
    rolloutDevice: (rolloutId, deviceId) => store.rolloutDevice(rolloutId, deviceId),
    rolloutMembers: (id) => store.rolloutMembers(id),
    rolloutStatusCounts: () => store.rolloutStatusCounts(),
    setRolloutDeviceStatus: async (rolloutId, deviceId, status, detail, now) => {
      const changed = await store.setRolloutDeviceStatus(rolloutId, deviceId, status, detail, now);
      if (changed) rollout(rolloutId);
      return changed;
    },
    markRolloutDevicesSent: async (rolloutId, deviceIds, now) => (await store.markRolloutDevicesSent(rolloutId, deviceIds, now), rollout(rolloutId)),
    getDevice: (id) => store.getDevice(id),
    listDevices: (enrollment) => store.listDevices(enrollment),
    deviceCounts: () => store.deviceCounts(),
    countDevices: (enrollment) => store.countDevices(enrollment),
    enrollPending: (id, publicKey, now) => deviceWrite(id, store.enrollPending(id, publicKey, now)),
    acceptDevice: (id, now) => deviceWrite(id, store.acceptDevice(id, now)),
    rejectDevice: (id, now) => deviceWrite(id, store.rejectDevice(id, now)),
    deleteDevice: (id) => deviceWrite(id, store.deleteDevice(id)),
    preauthorizeDevice: (id, publicKey, groups, now) => deviceWrite(id, store.preauthorizeDevice(id, publicKey, groups, now)),
    revokeDevice: (id, now) => deviceWrite(id, store.revokeDevice(id, now)),
    rekeyDevice: (id, publicKey, now) => deviceWrite(id, store.rekeyDevice(id, publicKey, now)),
    revokedKey: (publicKey) => store.revokedKey(publicKey),
    setDeviceGroups: (id, groups, now) => deviceWrite(id, store.setDeviceGroups(id, groups, now)),
    setDeviceTags: (id, tags) => deviceWrite(id, store.setDeviceTags(id, tags)),
    recordReport: async (report, now) => {
      const taken = await store.recordReport(report, now);
      if (taken) device(report.deviceId);
      return taken;
    },
    setOnline: async (id, online, now) => {
      const changed = await store.setOnline(id, online, now);
      if (changed) device(id);
      return changed;
    },
    deviceEvents: (id, limit) => store.deviceEvents(id, limit),
    close: () => store.close(),
  };
}
