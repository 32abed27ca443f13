/**
 * POST /api/v1/enroll: a device enrolls over HTTPS with the signed token it would present over
 * MQTT (its signature, and the enrollment proof for auto-accept), and once accepted gets its
 * broker client certificate (docs/mosquitto/). Authenticated by the token's signature, not the
 * admin token: the same enrollment rules as a CONNECT or a hello (server/mqtt/enrollment.ts).
 * A certificate certifies a public key the server already holds, so it is no secret: only the
 * holder of the device's key can use it.
 */
import { z } from "zod";
import type { Logger } from "../../../shared/log.ts";
import { DeviceTokenError, MAX_TOKEN_LENGTH, verifyDeviceToken } from "../../../shared/wire/device-token.ts";
import { pendingReason, type Enroll } from "../../mqtt/enrollment.ts";
import { BrokerCertificateError, type BrokerCertificates } from "../../tls/broker-certificates.ts";
import { HttpError } from "../http-error.ts";
import type { Metrics } from "../metrics.ts";

export const EnrollBodySchema = z.object({ token: z.string().min(1).max(MAX_TOKEN_LENGTH) }).strict();

export interface EnrollAnswer {
  status: 200 | 202;
  body: { deviceId: string; enrollment: "accepted"; certificate: string; notAfter: string } | { deviceId: string; enrollment: "pending"; message: string };
}

export interface EnrollRouteOptions {
  enroll: Enroll;
  /** Null: the server holds no CA key, and answers accepted devices with a 503. */
  certificates: BrokerCertificates | null;
  log: Logger;
  metrics: Metrics;
  now: () => Date;
  /** Awaited before a certificate is issued: the broker learns of a newly accepted device first (serve --mqtt-dynsec). */
  beforeCertificate?: (deviceId: string) => Promise<void>;
}

export type EnrollRoute = (body: unknown) => Promise<EnrollAnswer>;

export function createEnrollRoute(options: EnrollRouteOptions): EnrollRoute {
  const { log } = options;
  const outcomes = options.metrics.counter("aptostree_http_enrollments_total", "Enrollments over HTTPS (POST /api/v1/enroll), by outcome");
  const refuse = (status: number, code: string, outcome: string, deviceId: string | null, message: string): never => {
    outcomes(1, { outcome });
    log.warn({ event: "http.enroll.refused", deviceId, outcome, reason: message }, message);
    throw new HttpError(status, code, message);
  };
  return async (body) => {
    const parsed = EnrollBodySchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return refuse(400, "E_BAD_ENROLLMENT", "malformed", null, `${issue.path.join(".") || "body"}: ${issue.code === "unrecognized_keys" ? `unknown field ${issue.keys.join(", ")}` : issue.message} (send {"token": "<the device's signed token>"})`);
    }
    let token;
    try {
      token = verifyDeviceToken(parsed.data.token, options.now()).token;
    } catch (error) {
      if (!(error instanceof DeviceTokenError)) throw error;
      return refuse(401, error.code, "bad-token", null, error.message);
    }
    const { deviceId } = token;
    const enrolled = await options.enroll({ deviceId, publicKey: token.publicKey, proof: token.enrollment }, options.now());
    if (!enrolled.ok) {
      const busy = enrolled.reason === "pending-full" || enrolled.reason === "registry-full";
      return refuse(busy ? 503 : 403, busy ? "E_ENROLLMENT_BUSY" : "E_ENROLLMENT_REFUSED", enrolled.reason, deviceId, `refused to enroll ${deviceId}: ${enrolled.message}`);
    }
    const { device } = enrolled;
    if (device.enrollment === "pending") {
      outcomes(1, { outcome: "pending" });
      return { status: 202, body: { deviceId, enrollment: "pending", message: pendingReason(deviceId, enrolled.proof) } };
    }
    if (device.enrollment !== "accepted") {
      return refuse(403, "E_ENROLLMENT_REFUSED", device.enrollment, deviceId, `device '${deviceId}' is ${device.enrollment}; 'apt-ostree-server device accept ${deviceId}' admits it again`);
    }
    if (!options.certificates) {
      return refuse(503, "E_NO_BROKER_CA", "no-ca", deviceId, `device '${deviceId}' is accepted, but this server issues no broker certificates: it serves plain ports (--insecure-plain), so it has no CA`);
    }
    await options.beforeCertificate?.(deviceId);
    let issued;
    try {
      issued = await options.certificates.device(deviceId, device.publicKey, options.now());
    } catch (error) {
      if (!(error instanceof BrokerCertificateError)) throw error;
      return refuse(503, error.code, "no-ca", deviceId, `device '${deviceId}' is accepted, but no certificate could be issued: ${error.message}`);
    }
    outcomes(1, { outcome: "certificate" });
    log.info({ event: "http.enroll.certificate", deviceId, notAfter: issued.notAfter.toISOString() }, `issued ${deviceId} a broker certificate valid until ${issued.notAfter.toISOString()}`);
    return { status: 200, body: { deviceId, enrollment: "accepted", certificate: issued.certificate, notAfter: issued.notAfter.toISOString() } };
  };
}
