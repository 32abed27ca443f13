/**
 * What devices publish, whichever broker carried it: hello (enrollment by signed token), online
 * flags, and signed reports. Nothing from a device is trusted for what the broker says about it:
 * reports and hellos carry their own signatures.
 */
import type { Logger } from "../../shared/log.ts";
import { DeviceTokenError, verifyDeviceToken } from "../../shared/wire/device-token.ts";
import { ReportRejectedError, verifyReport, type Report } from "../../shared/wire/report.ts";
import { parseTopic } from "../../shared/wire/topics.ts";
import { KeyedSerial } from "../../shared/keyed-serial.ts";
import type { FleetStore } from "../fleet/store.ts";
import type { Metrics } from "../http/metrics.ts";
import type { ServerLimits } from "../config/limits.ts";
import { DeviceRateLimiter, deviceBudget, type DeviceBudget } from "./device-rate.ts";
import { createEnrollment, pendingReason, type Enroll } from "./enrollment.ts";

export interface IngestOptions {
  store: FleetStore;
  prefix: string;
  log: Logger;
  metrics: Metrics;
  /** Auto-accept devices that prove this fleet enrollment secret; null: none. */
  autoAcceptSecret: Uint8Array | null;
  limits: Pick<ServerLimits, "maxPendingDevices" | "maxDevices" | "deviceMessageBurst" | "deviceMessagesPerMinute">;
  now: () => Date;
  /** The per-device budget, shared with the broker's connections; one from `limits` when omitted. */
  budget?: DeviceBudget;
  /** Enrollment policy; one from `limits` and `autoAcceptSecret` when omitted. */
  enroll?: Enroll;
  onReport?: (report: Report) => void;
  /** Keeps each device's messages in order, one at a time; the broker shares its own with its online flags. */
  order?: KeyedSerial;
  /** Called when an accepted device comes online (not when it says so again). */
  onOnline?: (deviceId: string) => void;
}

/**
 * Never rejects: whatever a message holds, it is taken, or refused with a logged and counted
 * reason. One device's messages are taken one at a time, in the order they came.
 */
export type Ingest = (topic: string, payload: Buffer, authenticatedDeviceId: string | null) => Promise<void>;

/** `aptostree_mqtt_reports_total`'s outcome for each refusal code. */
const REPORT_OUTCOME: Readonly<Record<string, string>> = {
  E_REPORT_MALFORMED: "malformed",
  E_REPORT_SIGNATURE: "bad-signature",
  E_REPORT_REPLAY: "replay",
  E_REPORT_WRONG_DEVICE: "wrong-device",
};

export function createIngest(options: IngestOptions): Ingest {
  const { store, log, now } = options;
  const reports = options.metrics.counter("aptostree_mqtt_reports_total", "Device reports, by outcome");
  const hellos = options.metrics.counter("aptostree_mqtt_hellos_total", "Enrollment hellos, by outcome");
  const budget = options.budget ?? deviceBudget(new DeviceRateLimiter({ burst: options.limits.deviceMessageBurst, perMinute: options.limits.deviceMessagesPerMinute, now: () => now().getTime() }), options.metrics, log);
  const enroll = options.enroll ?? createEnrollment({ store, metrics: options.metrics, log, autoAcceptSecret: options.autoAcceptSecret, maxPendingDevices: options.limits.maxPendingDevices, maxDevices: options.limits.maxDevices });

  const hello = async (deviceId: string, payload: Buffer): Promise<void> => {
    try {
      // A known device pays for its hellos before its signature is checked; an unknown one is bounded by the pending cap.
      if (await store.getDevice(deviceId) && !budget(deviceId, "hello")) return;
      const { token } = verifyDeviceToken(payload.toString("utf8"), now());
      if (token.deviceId !== deviceId) throw new DeviceTokenError(`token is for '${token.deviceId}', published on '${deviceId}'`);
      const enrolled = await enroll({ deviceId, publicKey: token.publicKey, proof: token.enrollment }, now());
      if (!enrolled.ok && enrolled.reason === "key-mismatch") throw new DeviceTokenError(enrolled.message);
      if (!enrolled.ok) {
        hellos(1, { outcome: enrolled.reason });
        log.warn({ event: "mqtt.hello.refused", deviceId, reason: enrolled.message }, `refused to enroll ${deviceId}: ${enrolled.message}`);
        return;
      }
      hellos(1, { outcome: enrolled.device.enrollment });
      if (enrolled.device.enrollment === "pending" && (enrolled.proof === "missing" || enrolled.proof === "invalid")) {
        log.warn({ event: "mqtt.hello.pending", deviceId, proof: enrolled.proof }, pendingReason(deviceId, enrolled.proof));
      }
    } catch (error) {
      if (!(error instanceof DeviceTokenError)) throw error;
      hellos(1, { outcome: "rejected" });
      log.warn({ event: "mqtt.hello.rejected", deviceId, reason: error.message }, error.message);
    }
  };

  const failures = options.metrics.counter("aptostree_mqtt_ingest_errors_total", "Device messages whose handling failed on the server's side (see the log), by topic kind");

  const ingest = async (topicText: string, payload: Buffer, authenticatedDeviceId: string | null): Promise<void> => {
    const topic = parseTopic(options.prefix, topicText);
    if (!topic || topic.scope !== "device") return;
    // An empty payload clears a retained message (the server does so when it deletes a device): nothing to take.
    if (payload.length === 0) return;
    const { deviceId } = topic;
    if (authenticatedDeviceId !== null && authenticatedDeviceId !== deviceId) return;
    if (topic.kind === "hello") return hello(deviceId, payload);
    const device = await store.getDevice(deviceId);
    if (!device || device.enrollment !== "accepted") {
      if (topic.kind === "state") reports(1, { outcome: "not-accepted" });
      return;
    }
    if (topic.kind !== "online" && topic.kind !== "state") return;
    if (!budget(deviceId, topic.kind)) {
      if (topic.kind === "state") reports(1, { outcome: "rate-limited" });
      return;
    }
    if (topic.kind === "online") {
      const online = payload.toString() === "online";
      // Saying again what the store holds writes nothing and wakes nothing.
      if (device.online !== online && await store.setOnline(deviceId, online, now()) && online) options.onOnline?.(deviceId);
      return;
    }
    try {
      const report = verifyReport(payload, { deviceId, publicKey: new Uint8Array(Buffer.from(device.publicKey, "base64")), lastCounter: device.lastCounter });
      // Taken only over a lower stored counter: another instance (or a racing message) may have stored this one first.
      if (!(await store.recordReport(report, now()))) throw new ReportRejectedError("E_REPORT_REPLAY", `report counter ${report.counter} was already taken`, true);
      reports(1, { outcome: "accepted" });
      options.onReport?.(report);
    } catch (error) {
      if (!(error instanceof ReportRejectedError)) throw error;
      if (error.duplicate) {
        // Another instance on the same broker stored this very report (or a copy raced this one to the store).
        reports(1, { outcome: "duplicate" });
        log.debug({ event: "mqtt.report.duplicate", deviceId }, `a report from ${deviceId} was stored already (${error.message})`);
        return;
      }
      reports(1, { outcome: REPORT_OUTCOME[error.code] ?? error.code });
      log.warn({ event: "mqtt.report.rejected", deviceId, code: error.code, reason: error.message }, `rejected a report from ${deviceId}: ${error.message}`);
    }
  };

  const order = options.order ?? new KeyedSerial();
  return async (topicText, payload, authenticatedDeviceId) => {
    try {
      const topic = parseTopic(options.prefix, topicText);
      if (!topic || topic.scope !== "device") return;
      await order.run(topic.deviceId, () => ingest(topicText, payload, authenticatedDeviceId));
    } catch (error) {
      const kind = parseTopic(options.prefix, topicText)?.kind ?? "other";
      failures(1, { kind });
      log.error({ event: "mqtt.ingest.error", err: error, topic: topicText.slice(0, 256), deviceId: authenticatedDeviceId }, `could not handle a message on ${topicText.slice(0, 256)}; it was dropped`);
    }
  };
}
