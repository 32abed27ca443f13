/**
 * Client certificates for an external broker that authenticates clients by certificate
 * (docs/mosquitto/): a device's, for its own ed25519 key once it is accepted, and the server's
 * own. Both come from the CA in serve's TLS dir; ca.key is read at the first certificate and
 * kept. The CN is the identity the broker enforces (`use_identity_as_username`): a device's id,
 * or BROKER_SERVER_IDENTITY, which no device id can spell (ids have no ':', topics.ts).
 */
import { readFile } from "node:fs/promises";
import { AptOstreeError } from "../../shared/errors.ts";
import { NAME_PATTERN } from "../../shared/wire/topics.ts";
import type { IssuedPair } from "./certificates.ts";
import { tlsDirPaths } from "./tls-dir.ts";

/** The server's username on the broker (its certificate's CN); the ACL grants it apt-ostree/#. */
export const BROKER_SERVER_IDENTITY = "apt-ostree:server";

export class BrokerCertificateError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_BROKER_CERTIFICATE", message, { cause });
  }
}

export interface BrokerCertificates {
  /** The CA clients verify the broker with (the broker's certificate chains to it too). */
  caFile: string;
  /** A certificate for an accepted device's key (base64 raw ed25519), CN = its id. */
  device(deviceId: string, publicKey: string, now: Date): Promise<{ certificate: string; notAfter: Date }>;
  /** A new key and certificate for the server's own connection to the broker. */
  server(now: Date): Promise<IssuedPair & { notAfter: Date }>;
}

export function brokerCertificates(tlsDir: string): BrokerCertificates {
  const paths = tlsDirPaths(tlsDir);
  let ca: Promise<IssuedPair> | null = null;
  const loadCa = () => {
    ca ??= (async () => {
      const read = (file: string) =>
        readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
          throw new BrokerCertificateError(`cannot read ${file} (${error.code ?? error.message}): broker client certificates are issued by the CA in the server's TLS dir ('apt-ostree-server tls init'); with a CA of your own, issue them yourself`, error);
        });
      return { certificate: await read(paths.ca), key: await read(paths.caKey) };
    })().catch((error: unknown) => {
      ca = null;
      throw error;
    });
    return ca;
  };
  const issue = async (commonName: string, now: Date, ed25519PublicKey?: Uint8Array) => {
    const { issueClientCertificate } = await import("./certificates.ts");
    return issueClientCertificate(await loadCa(), { commonName, now, ...(ed25519PublicKey ? { ed25519PublicKey } : {}) });
  };
  return {
    caFile: paths.ca,
    device: async (deviceId, publicKey, now) => {
      if (!NAME_PATTERN.test(deviceId)) throw new BrokerCertificateError(`'${deviceId}' is not a device id; no certificate is issued for it`);
      const key = Buffer.from(publicKey, "base64");
      if (key.length !== 32) throw new BrokerCertificateError(`device '${deviceId}' has no ed25519 key on record (${key.length} bytes)`);
      const { certificate, notAfter } = await issue(deviceId, now, new Uint8Array(key));
      return { certificate, notAfter };
    },
    server: (now) => issue(BROKER_SERVER_IDENTITY, now),
  };
}
