/**
 * A private CA and the certificates it issues, for fleets without a PKI: ECDSA P-256 keys from
 * Node's webcrypto, X.509 v3 certificates built by @peculiar/x509 (RFC 5280). Nothing here
 * touches the disk (tls-dir.ts does). The CA is `cA:TRUE, pathlen:0` with keyCertSign only; a
 * server certificate carries serverAuth and the names clients check (RFC 6125): DNS names in
 * dNSName SANs, addresses in iPAddress SANs. A client certificate (a device's, for an external
 * broker that authenticates clients by certificate) carries clientAuth and its identity as the
 * subject's CN, which mosquitto's `use_identity_as_username` makes the username.
 */
// @peculiar/x509 resolves its algorithm providers through tsyringe, which needs a Reflect polyfill.
import "reflect-metadata";
import { isIP } from "node:net";
import { randomBytes, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { AptOstreeError } from "../../shared/errors.ts";
import { normalizeHostName } from "./host-name.ts";

// Node 18 has webcrypto only under node:crypto (globalThis.crypto needs a flag there).
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;
export const CA_DAYS = 3650;
export const SERVER_DAYS = 730;
/** Broker client certificates (devices', the server's own): short, since mosquitto 2.0 reads no CRL without a restart (docs/mosquitto/README.md). */
export const CLIENT_DAYS = 7;

export class CertificateError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_TLS_CERTIFICATE", message, { cause });
  }
}

/** A certificate and its private key, both PEM (the key PKCS#8). */
export interface IssuedPair {
  certificate: string;
  key: string;
}

/** The name as the certificate carries it; a CertificateError for one that is neither a DNS name nor an IP. */
export function checkHostName(name: string): string {
  const normalized = normalizeHostName(name);
  if (normalized === null) throw new CertificateError(`'${name}' is neither a DNS name nor an IP address; pass host names like server.example or 192.0.2.10`);
  return normalized;
}

function serialNumber(): string {
  // 16 random bytes, the top bit cleared so that the DER integer stays positive (RFC 5280 4.1.2.2).
  const bytes = randomBytes(16);
  bytes[0]! &= 0x7f;
  bytes[0]! |= 0x01;
  return bytes.toString("hex");
}

async function exportKey(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key as webcrypto.CryptoKey), "PRIVATE KEY");
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"])) as unknown as CryptoKeyPair;
}

/** Escapes an RDN value for x509's string names (RFC 4514 2.4). */
function rdn(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, "\\$1");
}

/**
 * How far back the CA's and the server certificate's validity start: a device without a battery-backed clock or
 * NTP may boot a day or more behind, and an hour of slack refused it (docs/agent.md, "Clocks").
 * It widens nothing that matters: a certificate's end is where it always was.
 */
export const BACKDATE_MS = 7 * DAY_MS;

/** A new self-signed CA valid `days` from `now` (backdated a week for clocks behind). */
export async function createCa(options: { commonName: string; now?: Date; days?: number }): Promise<IssuedPair> {
  const now = options.now ?? new Date();
  const keys = await generateKeys();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${rdn(options.commonName)}`,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + (options.days ?? CA_DAYS) * DAY_MS),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certificate: certificate.toString("pem"), key: await exportKey(keys.privateKey) };
}

export async function importCa(ca: IssuedPair): Promise<{ certificate: x509.X509Certificate; key: CryptoKey }> {
  try {
    const certificate = new x509.X509Certificate(ca.certificate);
    const der = x509.PemConverter.decodeFirst(ca.key);
    const key = (await webcrypto.subtle.importKey("pkcs8", der, ALGORITHM, false, ["sign"])) as unknown as CryptoKey;
    return { certificate, key };
  } catch (error) {
    throw new CertificateError(`the CA certificate or key cannot be used (an ECDSA P-256 pair made by 'tls init' is expected): ${(error as Error).message}`, error);
  }
}

/** A server certificate for `hosts` (DNS names and IPs; the first is the subject's CN), signed by `ca`. */
export async function issueServerCertificate(ca: IssuedPair, hosts: string[], options: { now?: Date; days?: number } = {}): Promise<IssuedPair> {
  if (hosts.length === 0) throw new CertificateError("a server certificate needs at least one host name");
  const names = [...new Set(hosts.map(checkHostName))];
  const now = options.now ?? new Date();
  const issuer = await importCa(ca);
  const keys = await generateKeys();
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${rdn(names[0]!)}`,
    issuer: issuer.certificate.subject,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + (options.days ?? SERVER_DAYS) * DAY_MS),
    signingKey: issuer.key,
    publicKey: keys.publicKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(names.map((name) => ({ type: isIP(name) ? ("ip" as const) : ("dns" as const), value: name })), false),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.certificate, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certificate: certificate.toString("pem"), key: await exportKey(keys.privateKey) };
}

/** What a client certificate certifies: its CN, and its key (a device's own ed25519 key, raw; absent: a new P-256 key, returned). */
export interface ClientCertificateRequest {
  commonName: string;
  ed25519PublicKey?: Uint8Array;
  now?: Date;
  days?: number;
}

/**
 * A client certificate signed by `ca` (clientAuth, digitalSignature). A device's carries its
 * ed25519 identity key, so it needs no new key and no CSR: the server knows the key from
 * enrollment. `key` is empty then (the device holds it).
 */
export async function issueClientCertificate(ca: IssuedPair, request: ClientCertificateRequest): Promise<IssuedPair & { notAfter: Date }> {
  const now = request.now ?? new Date();
  const issuer = await importCa(ca);
  let publicKey: CryptoKey;
  let key = "";
  if (request.ed25519PublicKey) {
    publicKey = (await webcrypto.subtle.importKey("raw", request.ed25519PublicKey, { name: "Ed25519" }, true, ["verify"])) as unknown as CryptoKey;
  } else {
    const keys = await generateKeys();
    publicKey = keys.publicKey;
    key = await exportKey(keys.privateKey);
  }
  const notAfter = new Date(now.getTime() + (request.days ?? CLIENT_DAYS) * DAY_MS);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${rdn(request.commonName)}`,
    issuer: issuer.certificate.subject,
    // An hour only: the broker checks it on the server's clock, and the device renews it at half
    // its life, which a week back would put at the moment it is issued.
    notBefore: new Date(now.getTime() - 3_600_000),
    notAfter,
    signingKey: issuer.key,
    publicKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.certificate, false),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
    ],
  });
  return { certificate: certificate.toString("pem"), key, notAfter };
}
