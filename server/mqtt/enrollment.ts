/**
 * Enrollment, for both ways a device introduces itself (its token in CONNECT on the embedded
 * broker, a hello through an external one). In order:
 *
 * - a key that was revoked or replaced (`device revoke`, `device rekey`) is refused, whatever id
 *   presents it; a revoked device is refused whatever key it presents;
 * - a known id must present the key on record; for a preauthorized id that is the key the
 *   operator named, and the first connection with it accepts the device;
 * - an unknown id (or a pending one) that proves the fleet enrollment secret is accepted at once
 *   when auto-accept is on (`autoAcceptSecret`);
 * - any other unknown id is stored as pending while fewer than `maxPendingDevices` wait, and
 *   beyond that is refused with nothing stored (issue 18, finding 3).
 *
 * Refusals store nothing and are counted in `aptostree_devices_enrollment_refused_total{reason}`;
 * proofs, when auto-accept looks at them, in `aptostree_devices_enrollment_proofs_total{outcome}`.
 */
import type { Logger } from "../../shared/log.ts";
import { checkEnrollmentProof } from "../../shared/wire/enrollment-proof.ts";
import type { Metrics } from "../http/metrics.ts";
import type { DeviceRecord, FleetStore } from "../fleet/store.ts";

export type EnrollmentRefusal = "revoked" | "revoked-key" | "key-mismatch" | "preauthorized-key-mismatch" | "pending-full" | "registry-full";

/** The CONNACK return code of each refusal (MQTT 3.1.1 §3.2.2.3): 3 try later, 4 bad credentials, 5 not authorized. */
export const REFUSAL_RETURN_CODE: Readonly<Record<EnrollmentRefusal, 3 | 4 | 5>> = {
  "revoked": 5,
  "revoked-key": 5,
  "key-mismatch": 4,
  "preauthorized-key-mismatch": 4,
  "pending-full": 3,
  "registry-full": 3,
};

/** What auto-accept made of the device's enrollment proof; `not-checked` without auto-accept or for a device it does not apply to. */
export type ProofOutcome = "valid" | "missing" | "invalid" | "not-checked";

export type EnrollmentDecision =
  | { ok: true; device: DeviceRecord; proof: ProofOutcome }
  | { ok: false; reason: EnrollmentRefusal; message: string };

export interface EnrollmentOptions {
  store: FleetStore;
  metrics: Metrics;
  /** Auto-accept: the fleet enrollment secret whose proof admits a new device at once; null: no auto-accept. */
  autoAcceptSecret: Uint8Array | null;
  /** Unknown devices are refused while this many wait for enrollment. */
  maxPendingDevices: number;
  /** Unknown devices are refused once the registry holds this many. */
  maxDevices: number;
  /** Logs acceptances (preauthorized key seen, auto-accept); refusals are logged by the caller. */
  log?: Logger;
}

/** What a device presents: its id, its public key (base64) and, optionally, its enrollment proof. */
export interface EnrollmentClaim {
  deviceId: string;
  publicKey: string;
  proof?: string;
}

/** Looks the device up, enrolling it when unknown and there is room; the caller admits only accepted ones. */
export type Enroll = (claim: EnrollmentClaim, now: Date) => Promise<EnrollmentDecision>;

export function createEnrollment(options: EnrollmentOptions): Enroll {
  const { store, autoAcceptSecret: secret } = options;
  const refusedCounter = options.metrics.counter("aptostree_devices_enrollment_refused_total", "Devices refused enrollment (nothing stored), by reason");
  const proofs = options.metrics.counter("aptostree_devices_enrollment_proofs_total", "Enrollment proofs auto-accept checked, by outcome (valid, missing, invalid)");
  const refuse = (reason: EnrollmentRefusal, message: string): EnrollmentDecision => {
    refusedCounter(1, { reason });
    return { ok: false, reason, message };
  };
  const checkProof = (claim: EnrollmentClaim): ProofOutcome => {
    if (!secret) return "not-checked";
    const outcome = claim.proof === undefined ? "missing" : checkEnrollmentProof(secret, claim.deviceId, claim.publicKey, claim.proof) ? "valid" : "invalid";
    proofs(1, { outcome });
    return outcome;
  };
  const accepted = async (deviceId: string, how: string, now: Date): Promise<DeviceRecord> => {
    const device = await store.acceptDevice(deviceId, now);
    options.log?.info({ event: "enrollment.accepted", deviceId, how }, `accepted ${deviceId} (${how})`);
    return device;
  };

  return async (claim, now) => {
    const { deviceId, publicKey } = claim;
    const barred = await store.revokedKey(publicKey);
    if (barred) {
      const what = barred.reason === "revoked" ? `revoked with device '${barred.deviceId}'` : `replaced on device '${barred.deviceId}' (rekey)`;
      return refuse("revoked-key", `the key '${deviceId}' presents was ${what} at ${barred.revokedAt}; it is refused under any id`);
    }
    const device = await store.getDevice(deviceId);
    if (device?.enrollment === "revoked") return refuse("revoked", `device '${deviceId}' is revoked; 'apt-ostree-server device rekey ${deviceId} --key PUB' admits it again with a new key`);
    if (device && device.publicKey !== publicKey) {
      if (device.enrollment === "preauthorized") return refuse("preauthorized-key-mismatch", `'${deviceId}' is preauthorized with another key; the key it presents is refused (preauthorize it again to change the key)`);
      return refuse("key-mismatch", `token key differs from the key '${deviceId}' enrolled with`);
    }
    if (device?.enrollment === "preauthorized") return { ok: true, device: await accepted(deviceId, "preauthorized key", now), proof: "not-checked" };
    if (device && device.enrollment !== "pending") return { ok: true, device, proof: "not-checked" };
    if (!device) {
      const registered = await store.countDevices();
      if (registered >= options.maxDevices) {
        return refuse("registry-full", `the registry holds ${registered} devices (limits.maxDevices); delete some before '${deviceId}' can enroll`);
      }
    }
    const proof = checkProof(claim);
    if (!device && proof !== "valid") {
      const pending = await store.countDevices("pending");
      if (pending >= options.maxPendingDevices) {
        return refuse("pending-full", `${pending} devices already wait for enrollment (limits.maxPendingDevices); accept, reject or delete some before '${deviceId}' can enroll`);
      }
    }
    const record = device ?? await store.enrollPending(deviceId, publicKey, now);
    // Another connection (or instance) enrolled this id between the read above and the insert:
    // the stored key is the first one's, and a proof made for this key admits no other.
    if (record.publicKey !== publicKey) return refuse("key-mismatch", `token key differs from the key '${deviceId}' enrolled with`);
    if (proof === "valid") return { ok: true, device: await accepted(deviceId, "auto-accept: valid enrollment proof", now), proof };
    return { ok: true, device: record, proof };
  };
}

/** Why a pending device waits, in words for the refusal's log line. */
export function pendingReason(deviceId: string, proof: ProofOutcome): string {
  const wait = `device '${deviceId}' is pending; accept it first`;
  if (proof === "missing") return `${wait} (auto-accept is on, but its token carries no enrollment proof: give the device the fleet enrollment secret, agent setting enrollmentSecretFile)`;
  if (proof === "invalid") return `${wait} (its enrollment proof does not match the fleet enrollment secret)`;
  return wait;
}
