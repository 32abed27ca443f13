/**
 * What devices publish, whichever broker carried it: hello (enrollment by signed token), online
 * flags, and signed reports. Nothing from a device is trusted for what the broker says about it:
 * reports and hellos carry their own signatures.
 */
import type { Logger } from "../../shared/log.ts";
import { DeviceTokenError, verifyDeviceToken } from "../../shared/wire/device-token.ts";
import { ReportRejectedError, verifyReport, type Report } from "../../shared/wire/report.ts";
import { parseTopic } from "../../shared/wire/topics.ts";
import type { FleetStore } from "../fleet/store.ts";
import type { Metrics } from "../http/metrics.ts";

export interface IngestOptions {
  store: FleetStore;
  prefix: string;
  log: Logger;
  metrics: Metrics;
  autoAccept: boolean;
  now: () => Date;
  onReport?: (report: Report) => void;
  onOnline?: (deviceId: string) => void;
}

/** Never throws: whatever a message holds, it is taken, or refused with a logged and counted reason. */
export type Ingest = (topic: string, payload: Buffer, authenticatedDeviceId: string | null) => void;

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

  const hello = (deviceId: string, payload: Buffer): void => {
    try {
      const { token } = verifyDeviceToken(payload.toString("utf8"), now());
      if (token.deviceId !== deviceId) throw new DeviceTokenError(`token is for '${token.deviceId}', published on '${deviceId}'`);
      const known = store.getDevice(deviceId);
      if (known && known.publicKey !== token.publicKey) throw new DeviceTokenError(`token key differs from the key '${deviceId}' enrolled with`);
      let device = known ?? store.enrollPending(deviceId, token.publicKey, now());
      if (device.enrollment === "pending" && options.autoAccept) device = store.acceptDevice(deviceId, now());
      hellos(1, { outcome: device.enrollment });
    } catch (error) {
      if (!(error instanceof DeviceTokenError)) throw error;
      hellos(1, { outcome: "rejected" });
      log.warn({ event: "mqtt.hello.rejected", deviceId, reason: error.message }, error.message);
    }
  };

  const failures = options.metrics.counter("aptostree_mqtt_ingest_errors_total", "Device messages whose handling failed on the server's side (see the log), by topic kind");

  const ingest = (topicText: string, payload: Buffer, authenticatedDeviceId: string | null): void => {
    const topic = parseTopic(options.prefix, topicText);
    if (!topic || topic.scope !== "device") return;
    const { deviceId } = topic;
    if (authenticatedDeviceId !== null && authenticatedDeviceId !== deviceId) return;
    if (topic.kind === "hello") return hello(deviceId, payload);
    const device = store.getDevice(deviceId);
    if (!device || device.enrollment !== "accepted") {
      if (topic.kind === "state") reports(1, { outcome: "not-accepted" });
      return;
    }
    if (topic.kind === "online") {
      const online = payload.toString() === "online";
      store.setOnline(deviceId, online, now());
      if (online) options.onOnline?.(deviceId);
      return;
    }
    if (topic.kind !== "state") return;
    try {
      const report = verifyReport(payload, { deviceId, publicKey: new Uint8Array(Buffer.from(device.publicKey, "base64")), lastCounter: device.lastCounter });
      store.recordReport(report, now());
      reports(1, { outcome: "accepted" });
      options.onReport?.(report);
    } catch (error) {
      if (!(error instanceof ReportRejectedError)) throw error;
      reports(1, { outcome: REPORT_OUTCOME[error.code] ?? error.code });
      log.warn({ event: "mqtt.report.rejected", deviceId, code: error.code, reason: error.message }, `rejected a report from ${deviceId}: ${error.message}`);
    }
  };

  return (topicText, payload, authenticatedDeviceId) => {
    try {
      ingest(topicText, payload, authenticatedDeviceId);
    } catch (error) {
      const kind = parseTopic(options.prefix, topicText)?.kind ?? "other";
      failures(1, { kind });
      log.error({ event: "mqtt.ingest.error", err: error, topic: topicText.slice(0, 256), deviceId: authenticatedDeviceId }, `could not handle a message on ${topicText.slice(0, 256)}; it was dropped`);
    }
  };
}
