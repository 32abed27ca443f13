/** Broker client certificates: what the server issues (server/tls/) and when the agent asks for a new one (device/agent/broker-certificate.ts). */
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { brokerCertificates, BROKER_SERVER_IDENTITY } from "../../../server/tls/broker-certificates.ts";
import { initTlsDir } from "../../../server/tls/tls-dir.ts";
import { usableCertificate } from "../../../device/agent/broker-certificate.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { NAME_PATTERN } from "../../../shared/wire/topics.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const DAY = 86_400_000;
let dir: string;
beforeAll(async () => {
  dir = await makeTempDir("broker-certificates");
  await initTlsDir(`${dir}/tls`, ["127.0.0.1"]);
});
afterAll(() => removeTree(dir));

describe("broker client certificates", () => {
  it("certify the device's own ed25519 key under its id, for clientAuth, 7 days", async () => {
    const key = generateKeyPair();
    const now = new Date();
    const { certificate, notAfter } = await brokerCertificates(`${dir}/tls`).device("dev-1", Buffer.from(key.publicKey).toString("base64"), now);
    const parsed = new X509Certificate(certificate);
    expect(parsed.subject).toBe("CN=dev-1");
    expect(parsed.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(parsed.ca).toBe(false);
    expect(notAfter.getTime() - now.getTime()).toBe(7 * DAY);
    expect(usableCertificate(certificate, { deviceId: "dev-1", key }, now)).not.toBeNull();
  });

  it("give the server a name no device id can have", async () => {
    expect(NAME_PATTERN.test(BROKER_SERVER_IDENTITY)).toBe(false);
    const pair = await brokerCertificates(`${dir}/tls`).server(new Date());
    expect(new X509Certificate(pair.certificate).subject).toBe(`CN=${BROKER_SERVER_IDENTITY}`);
    expect(pair.key).toMatch(/BEGIN PRIVATE KEY/);
    await expect(brokerCertificates(`${dir}/tls`).device(BROKER_SERVER_IDENTITY, Buffer.alloc(32).toString("base64"), new Date())).rejects.toThrow(/'apt-ostree:server' is not a device id/);
  });

  it("cannot be issued without the CA key, and say where it was looked for", async () => {
    await expect(brokerCertificates(`${dir}/none`).server(new Date())).rejects.toThrow(/cannot read .*none\/ca\.pem \(ENOENT\).*tls init/);
  });

  it("are asked for again past half their life, or when they name another id or key", async () => {
    const key = generateKeyPair();
    const issued = new Date("2030-01-01T00:00:00Z");
    const { certificate } = await brokerCertificates(`${dir}/tls`).device("dev-2", Buffer.from(key.publicKey).toString("base64"), issued);
    const identity = { deviceId: "dev-2", key };
    // Valid from an hour before issue to 7 days after: half is reached 3.5 days minus half an hour in.
    expect(usableCertificate(certificate, identity, new Date(issued.getTime() + 3 * DAY))).not.toBeNull();
    expect(usableCertificate(certificate, identity, new Date(issued.getTime() + 3.5 * DAY))).toBeNull();
    expect(usableCertificate(certificate, { deviceId: "dev-3", key }, issued)).toBeNull();
    expect(usableCertificate(certificate, { deviceId: "dev-2", key: generateKeyPair() }, issued)).toBeNull();
    expect(usableCertificate("not a certificate", identity, issued)).toBeNull();
  });
});
