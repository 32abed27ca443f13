/**
 * The agent's broker client certificate (mqttAuth `certificate`; docs/mosquitto/): the server
 * issues it at POST /api/v1/enroll, for the device's own ed25519 key, once the device is
 * accepted; the agent keeps it in `<stateDir>/mqtt-client.pem` and asks for a new one before a
 * connect when it is missing, names another id or key, or is past half its life. The request
 * carries a fresh signed token (with the enrollment proof), so it also enrolls a new device. It
 * goes over node:https (loaded here only), trusting caFile alone.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import * as z from "zod/mini";
import { AptOstreeError } from "../../shared/errors.ts";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import type { Logger } from "../../shared/log.ts";
import { privateKeyPem } from "../../shared/sign/ed25519.ts";
import { parseBoundedJson } from "../../shared/wire/bounded-json.ts";
import { createDeviceToken } from "../../shared/wire/device-token.ts";
import type { DeviceIdentity } from "./identity.ts";

export const CERTIFICATE_FILE = "mqtt-client.pem";
const MAX_ANSWER_BYTES = 64 * 1024;

export class BrokerCertificateError extends AptOstreeError {
  constructor(code: "E_ENROLLMENT_PENDING" | "E_BROKER_CERTIFICATE", message: string, cause?: unknown) {
    super(code, message, { cause });
  }
}

/** What the TLS connection to the broker presents: the certificate and the device's key, PEM. */
export interface BrokerCredentials {
  cert: string;
  key: string;
}

export interface BrokerCertificateOptions {
  /** The server's base URL (settings.server). */
  server: string;
  /** The one CA an https:// server must chain to; null: Node's CAs. */
  caFile: string | null;
  stateDir: string;
  identity: DeviceIdentity;
  enrollmentSecret: Uint8Array | null;
  now: () => Date;
  log: Logger;
}

const AnswerSchema = z.union([
  z.object({ enrollment: z.literal("accepted"), certificate: z.string().check(z.maxLength(16_384)), notAfter: z.string() }),
  z.object({ enrollment: z.literal("pending"), message: z.string().check(z.maxLength(2048)) }),
]);
const ErrorSchema = z.object({ error: z.object({ code: z.string(), message: z.string().check(z.maxLength(2048)) }) });

/** Null when the certificate is not this device's, or should be renewed (past half its life, or expired). */
export function usableCertificate(pem: string, identity: DeviceIdentity, now: Date): X509Certificate | null {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem);
  } catch {
    return null;
  }
  const key = certificate.publicKey.export({ format: "der", type: "spki" });
  if (!Buffer.from(key.subarray(key.length - 32)).equals(Buffer.from(identity.key.publicKey)) || certificate.publicKey.asymmetricKeyType !== "ed25519") return null;
  if (!certificate.subject.split("\n").includes(`CN=${identity.deviceId}`)) return null;
  const from = Date.parse(certificate.validFrom);
  const to = Date.parse(certificate.validTo);
  return now.getTime() < from + (to - from) / 2 ? certificate : null;
}

/** The credentials for the next connect: the kept certificate, or a new one from the server. */
export async function brokerCredentials(options: BrokerCertificateOptions): Promise<BrokerCredentials> {
  const file = join(options.stateDir, CERTIFICATE_FILE);
  const key = privateKeyPem(options.identity.key.seed);
  const kept = await readFile(file, "utf8").catch(() => null);
  if (kept !== null && usableCertificate(kept, options.identity, options.now())) return { cert: kept, key };
  try {
    const cert = await requestCertificate(options);
    await writeFileAtomic(file, cert, 0o644);
    options.log.info({ event: "agent.certificate.issued", file }, `the server issued this device a broker certificate (${file})`);
    return { cert, key };
  } catch (error) {
    // A certificate due for renewal still works until it expires: the server may be away for a while.
    if (kept !== null && stillValid(kept, options.now())) {
      options.log.warn({ event: "agent.certificate.renewal-failed", err: error }, `could not renew the broker certificate, using the current one: ${(error as Error).message}`);
      return { cert: kept, key };
    }
    throw error;
  }
}

function stillValid(pem: string, now: Date): boolean {
  try {
    return Date.parse(new X509Certificate(pem).validTo) > now.getTime();
  } catch {
    return false;
  }
}

async function requestCertificate(options: BrokerCertificateOptions): Promise<string> {
  const url = new URL("api/v1/enroll", options.server.endsWith("/") ? options.server : `${options.server}/`);
  const token = createDeviceToken(options.identity.deviceId, options.identity.key, options.now(), undefined, options.enrollmentSecret);
  const { status, text } = await postJson(url, JSON.stringify({ token }), options.caFile);
  let body: unknown;
  try {
    body = parseBoundedJson(text, { maxBytes: MAX_ANSWER_BYTES, maxDepth: 3, maxNodes: 16 });
  } catch (error) {
    throw new BrokerCertificateError("E_BROKER_CERTIFICATE", `${url.origin} answered ${status} with no JSON to POST /api/v1/enroll`, error);
  }
  if (status === 200 || status === 202) {
    const answer = AnswerSchema.safeParse(body);
    if (!answer.success) throw new BrokerCertificateError("E_BROKER_CERTIFICATE", `${url.origin} answered ${status} to POST /api/v1/enroll with an unexpected body`);
    if (answer.data.enrollment === "pending") throw new BrokerCertificateError("E_ENROLLMENT_PENDING", `no broker certificate yet: ${answer.data.message}`);
    return answer.data.certificate;
  }
  const error = ErrorSchema.safeParse(body);
  throw new BrokerCertificateError("E_BROKER_CERTIFICATE", `${url.origin} refused a broker certificate (${status}${error.success ? ` ${error.data.error.code}: ${error.data.error.message}` : ""})`);
}

async function postJson(url: URL, body: string, caFile: string | null): Promise<{ status: number; text: string }> {
  const secure = url.protocol === "https:";
  const ca = secure && caFile ? await readFile(caFile) : undefined;
  const { request } = secure ? await import("node:https") : await import("node:http");
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }, timeout: 30_000, ...(ca ? { ca } : {}) }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) return req.destroy(new BrokerCertificateError("E_BROKER_CERTIFICATE", `${url.origin} answered more than ${MAX_ANSWER_BYTES} bytes to POST /api/v1/enroll`));
        chunks.push(chunk);
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new BrokerCertificateError("E_BROKER_CERTIFICATE", `${url.origin} did not answer POST /api/v1/enroll within 30 s`)));
    req.on("error", (error) => reject(error instanceof BrokerCertificateError ? error : new BrokerCertificateError("E_BROKER_CERTIFICATE", `cannot reach ${url.origin} for a broker certificate: ${error.message}`, error)));
    req.end(body);
  });
}
