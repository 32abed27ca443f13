/**
 * The agent against a server that speaks TLS only: it connects over mqtts:// and downloads over
 * https://, trusting the CA in its caFile and nothing else, and checking the server's name. A
 * server signed by another CA, a name the certificate does not carry and a plain-text server are
 * refused with words that say what to fix.
 */
import { readFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MqttClient } from "../../../device/mqtt/client.ts";
import { fetchChannelManifest } from "../../../device/update/channel.ts";
import { loadHttpClient, useTrustedCa } from "../../../device/update/load-http-client.ts";
import { issueServerCertificate } from "../../../server/tls/certificates.ts";
import { initTlsDir } from "../../../server/tls/tls-dir.ts";
import { AgentFixture, REF } from "../../helpers/agent-fixture.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();
let otherCa: string;

beforeAll(async () => {
  await fixture.setUp("agent-tls", { tls: true });
  otherCa = (await initTlsDir(join(fixture.dir, "other-tls"), ["localhost"])).ca;
  await fixture.startAgent();
  await until(async () => (await fixture.device())?.booted?.version === "1", "dev-1 to connect over mqtts:// and report v1", 30_000);
}, 60_000);

afterAll(() => fixture.tearDown());

/** The first error an MqttClient reports for `url` trusting `caFile`, or "connected". */
function firstMqttError(url: string, caFile: string): Promise<string> {
  return new Promise((resolve) => {
    const client: MqttClient = new MqttClient({
      url,
      caFile,
      connectPacket: () => ({ clientId: "probe", keepaliveSeconds: 0, clean: true }),
      connectTimeoutMs: 5000,
      minReconnectMs: 60_000,
      maxReconnectMs: 60_000,
      onConnect: () => void client.end().then(() => resolve("connected")),
      onMessage: () => undefined,
      onError: (error) => void client.end().then(() => resolve(error.message)),
    });
  });
}

describe("the agent over TLS", () => {
  it("takes an update through mqtts:// and https:// with the pinned CA", async () => {
    expect(fixture.settings.server).toMatch(/^https:\/\/localhost:/);
    expect(fixture.settings.mqtt).toMatch(/^mqtts:\/\/127\.0\.0\.1:/);
    const v2 = await fixture.publishVersion(2);
    const { json } = await fixture.api("rollouts", { ref: REF, select: { devices: ["dev-1"] }, waves: "100%", waveDelay: "0s", waveTimeout: "5m" });
    await fixture.rebootWhenAsked();
    await until(async () => ((await fixture.api(`rollouts/${json.rollout.id}`)).json.rollout.progress.state === "completed" ? true : null), "the rollout to complete", 60_000);
    expect(await fixture.device()).toMatchObject({ state: "healthy", booted: { commit: v2, version: "2" } });
    const downloaded = (await fixture.api("devices/dev-1")).json.events.find((e: { report: { progress?: { bytes: number } } | null }) => e.report?.progress?.bytes);
    expect(downloaded.report.progress.bytes).toBeGreaterThan(0);
  }, 120_000);

  it("refuses a server whose certificate another CA signed, naming the CA file", async () => {
    const refused = fetchChannelManifest(`${fixture.settings.server}/repo`, "stable", REF);
    await expect(refused).resolves.toBeTruthy(); // the pinned CA: fine
    useTrustedCa(otherCa);
    try {
      await expect(fetchChannelManifest(`${fixture.settings.server}/repo`, "stable", REF)).rejects.toThrow(
        `TLS to ${fixture.settings.server}: the server's certificate is not signed by the CA in ${otherCa} (UNABLE_TO_VERIFY_LEAF_SIGNATURE); the server uses another CA, or this is not the CA it uses`,
      );
    } finally {
      useTrustedCa(fixture.tlsCa);
    }
    expect(await firstMqttError(fixture.settings.mqtt, otherCa)).toBe(
      `TLS to ${fixture.settings.mqtt}: the server's certificate is not signed by the CA in ${otherCa} (UNABLE_TO_VERIFY_LEAF_SIGNATURE); the server uses another CA, or this is not the CA it uses`,
    );
  });

  it("refuses a host name the certificate does not carry", async () => {
    // A certificate from the same CA for another name only.
    const tlsDir = join(fixture.dir, "tls");
    const ca = { certificate: await readFile(join(tlsDir, "ca.pem"), "utf8"), key: await readFile(join(tlsDir, "ca.key"), "utf8") };
    const other = await issueServerCertificate(ca, ["other.example"]);
    const server = createHttpsServer({ cert: other.certificate, key: other.key }, (_req, res) => res.end("ok"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    try {
      const { request } = await loadHttpClient();
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      await expect(request(url, { caFile: fixture.tlsCa })).rejects.toThrow(/the server's certificate does not name the host in the URL \(.*127\.0\.0\.1.*\); use a name it carries/);
    } finally {
      server.close();
    }
  });

  it("says so when the CA file is missing, and when the server speaks plain text", async () => {
    const missing = join(fixture.dir, "no-such-ca.pem");
    expect(await firstMqttError(fixture.settings.mqtt, missing)).toMatch(new RegExp(`^cannot read the CA certificate ${missing} \\(caFile\\) that 127\\.0\\.0\\.1:\\d+ must be signed by: ENOENT`));
    const { request } = await loadHttpClient();
    await expect(request(`${fixture.settings.server}/healthz`, { caFile: missing })).rejects.toThrow(`cannot read the CA certificate ${missing} (caFile)`);
    // A plain-text server behind an https:// URL.
    const plain = createHttpServer((_req, res) => res.end("plain"));
    await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", () => resolve()));
    try {
      const port = (plain.address() as AddressInfo).port;
      await expect(request(`https://127.0.0.1:${port}/`, { caFile: fixture.tlsCa })).rejects.toThrow(/the server does not speak TLS on this port .*use http:\/\/ or mqtt:\/\//);
    } finally {
      plain.close();
    }
  });
});
