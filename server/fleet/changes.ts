/**
 * Tells listeners (the dashboard's live event stream) that the fleet changed: a store decorator
 * that notifies after every write, so reports, enrollment, online flags and rollout progress all
 * reach the dashboard without hooks in each writer.
 */
import type { FleetStore } from "./store.ts";

export type FleetChange = { kind: "device"; id: string } | { kind: "rollout"; id: string };
export type FleetListener = (change: FleetChange) => void;

export class FleetChanges {
  private readonly listeners = new Set<FleetListener>();

  subscribe(listener: FleetListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(change: FleetChange): void {
    for (const listener of this.listeners) listener(change);
  }
}

/** `store`, with `changes` told after each write (reads pass through untouched). */
export function notifyingStore(store: FleetStore, changes: FleetChanges): FleetStore {
  const device = (id: string) => changes.notify({ kind: "device", id });
  const rollout = (id: string) => changes.notify({ kind: "rollout", id });
  return {
    createRollout: (record, members) => (store.createRollout(record, members), rollout(record.id)),
    getRollout: (id) => store.getRollout(id),
    listRollouts: (state) => store.listRollouts(state),
    updateRollout: (id, progress, pauseReason, now) => (store.updateRollout(id, progress, pauseReason, now), rollout(id)),
    rolloutDevices: (id) => store.rolloutDevices(id),
    rolloutDevice: (rolloutId, deviceId) => store.rolloutDevice(rolloutId, deviceId),
    rolloutMembers: (id) => store.rolloutMembers(id),
    rolloutStatusCounts: () => store.rolloutStatusCounts(),
    setRolloutDeviceStatus: (rolloutId, deviceId, status, detail, now) => (store.setRolloutDeviceStatus(rolloutId, deviceId, status, detail, now), rollout(rolloutId)),
    markRolloutDevicesSent: (rolloutId, deviceIds, now) => (store.markRolloutDevicesSent(rolloutId, deviceIds, now), rollout(rolloutId)),
    getDevice: (id) => store.getDevice(id),
    listDevices: (enrollment) => store.listDevices(enrollment),
    deviceCounts: () => store.deviceCounts(),
    countDevices: (enrollment) => store.countDevices(enrollment),
    enrollPending: (id, publicKey, now) => {
      const record = store.enrollPending(id, publicKey, now);
      device(id);
      return record;
    },
    acceptDevice: (id, now) => {
      const record = store.acceptDevice(id, now);
      device(id);
      return record;
    },
    rejectDevice: (id, now) => {
      const record = store.rejectDevice(id, now);
      device(id);
      return record;
    },
    deleteDevice: (id) => {
      const record = store.deleteDevice(id);
      device(id);
      return record;
    },
    preauthorizeDevice: (id, publicKey, groups, now) => {
      const record = store.preauthorizeDevice(id, publicKey, groups, now);
      device(id);
      return record;
    },
    revokeDevice: (id, now) => {
      const record = store.revokeDevice(id, now);
      device(id);
      return record;
    },
    rekeyDevice: (id, publicKey, now) => {
      const record = store.rekeyDevice(id, publicKey, now);
      device(id);
      return record;
    },
    revokedKey: (publicKey) => store.revokedKey(publicKey),
    setDeviceGroups: (id, groups, now) => {
      const record = store.setDeviceGroups(id, groups, now);
      device(id);
      return record;
    },
    setDeviceTags: (id, tags) => {
      const record = store.setDeviceTags(id, tags);
      device(id);
      return record;
    },
    recordReport: (report, now) => (store.recordReport(report, now), device(report.deviceId)),
    setOnline: (id, online, now) => {
      const changed = store.setOnline(id, online, now);
      if (changed) device(id);
      return changed;
    },
    deviceEvents: (id, limit) => store.deviceEvents(id, limit),
    close: () => store.close(),
  };
}
