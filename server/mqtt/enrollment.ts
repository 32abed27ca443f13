/**
 * Enrollment, for both ways a device introduces itself (its token in CONNECT on the embedded
 * broker, a hello through an external one): a known id must present the key on record; an
 * unknown id is stored as pending while fewer than `maxPendingDevices` wait, and beyond that is
 * refused with nothing stored (issue 18, finding 3); auto-accept accepts it at once.
 */
import type { Metrics } from "../http/metrics.ts";
import type { DeviceRecord, FleetStore } from "../fleet/store.ts";

export type EnrollmentDecision =
  | { ok: true; device: DeviceRecord }
  | { ok: false; reason: "key-mismatch" | "pending-full" | "registry-full"; message: string };

export interface EnrollmentOptions {
  store: FleetStore;
  metrics: Metrics;
  autoAccept: boolean;
  /** Unknown devices are refused while this many wait for enrollment. */
  maxPendingDevices: number;
  /** Unknown devices are refused once the registry holds this many (with auto-accept, the only bound). */
  maxDevices: number;
}

/** Looks the device up, enrolling it when unknown and there is room; the caller admits only accepted ones. */
export type Enroll = (deviceId: string, publicKey: string, now: Date) => EnrollmentDecision;

export function createEnrollment(options: EnrollmentOptions): Enroll {
  const { store } = options;
  const refused = options.metrics.counter("aptostree_devices_enrollment_refused_total", "Devices refused enrollment (nothing stored), by reason");
  return (deviceId, publicKey, now) => {
    let device = store.getDevice(deviceId);
    if (device && device.publicKey !== publicKey) {
      refused(1, { reason: "key-mismatch" });
      return { ok: false, reason: "key-mismatch", message: `token key differs from the key '${deviceId}' enrolled with` };
    }
    if (!device) {
      const registered = store.countDevices("accepted") + store.countDevices("pending") + store.countDevices("rejected");
      if (registered >= options.maxDevices) {
        refused(1, { reason: "registry-full" });
        return { ok: false, reason: "registry-full", message: `the registry holds ${registered} devices (limits.maxDevices); delete some before '${deviceId}' can enroll` };
      }
      const pending = options.autoAccept ? 0 : store.countDevices("pending");
      if (pending >= options.maxPendingDevices) {
        refused(1, { reason: "pending-full" });
        return { ok: false, reason: "pending-full", message: `${pending} devices already wait for enrollment (limits.maxPendingDevices); accept, reject or delete some before '${deviceId}' can enroll` };
      }
      device = store.enrollPending(deviceId, publicKey, now);
    }
    if (device.enrollment === "pending" && options.autoAccept) device = store.acceptDevice(deviceId, now);
    return { ok: true, device };
  };
}
