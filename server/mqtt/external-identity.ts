/**
 * The server's TLS material for an external broker over mqtts:// or wss://: the fleet CA the
 * broker's certificate must chain to, and a client certificate of its own (CN
 * BROKER_SERVER_IDENTITY, a fresh P-256 key) for a broker that authenticates clients by
 * certificate (docs/mosquitto/). Client certificates are short-lived, so a new one is issued
 * every REISSUE_MS; each reconnect presents the newest.
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "../../shared/log.ts";
import { BrokerCertificateError, type BrokerCertificates } from "../tls/broker-certificates.ts";

export interface BrokerTls {
  ca: string;
  cert?: string;
  key?: string;
}

export interface ExternalBrokerIdentity {
  current(): BrokerTls;
  stop(): void;
}

const REISSUE_MS = 86_400_000;

export async function externalBrokerIdentity(certificates: BrokerCertificates, log: Logger): Promise<ExternalBrokerIdentity> {
  const ca = await readFile(certificates.caFile, "utf8");
  let tls: BrokerTls = { ca };
  const issue = async () => {
    try {
      const pair = await certificates.server(new Date());
      tls = { ca, cert: pair.certificate, key: pair.key };
      log.debug({ event: "mqtt.external.certificate", notAfter: pair.notAfter.toISOString() }, "issued the server's broker client certificate");
    } catch (error) {
      if (!(error instanceof BrokerCertificateError)) throw error;
      log.warn({ event: "mqtt.external.no-certificate", reason: error.message }, `connecting to the broker without a client certificate: ${error.message}`);
    }
  };
  await issue();
  const timer = setInterval(() => void issue().catch((error: Error) => log.error({ event: "mqtt.external.certificate.failed", err: error }, `cannot renew the broker client certificate: ${error.message}`)), REISSUE_MS);
  timer.unref();
  return { current: () => tls, stop: () => clearInterval(timer) };
}
