/**
 * `serve --tls-dir`: the real process with the files `tls init` made. HTTPS, MQTT over TLS and
 * WSS work for a client that trusts the CA; plain text on either port is refused; the broker's
 * connection limits and packet-size guard hold for TLS connections as for plain ones.
 */
import { connect as connectTcp, type Socket } from "node:net";
import { connect as connectTls, type TLSSocket } from "node:tls";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../../shared/wire/device-token.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { startServeProcess, type ServeProcess } from "../../helpers/serve-process.ts";
import { TEST_ADMIN_TOKEN } from "../../helpers/server-settings.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";

const UNAUTHENTICATED_PER_ADDRESS = 4;
let dir: string;
let server: ServeProcess;
let ca: string;
const clients: MqttClient[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  dir = await makeTempDir("tls-serve");
  const tlsDir = join(dir, "tls");
  await execa(process.execPath, [SERVER_CLI, "tls", "init", "--out", tlsDir]);
  await execa(process.execPath, [SERVER_CLI, "tls", "init", "--out", join(dir, "other-ca")]);
  ca = await readFile(join(tlsDir, "ca.pem"), "utf8");
  server = await startServeProcess({ dir, tlsDir, limits: { mqttMaxUnauthenticatedPerAddress: UNAUTHENTICATED_PER_ADDRESS, mqttConnectTimeoutSeconds: 3, mqttMaxPacketBytes: 64 * 1024 } });
}, 60_000);

afterAll(async () => {
  for (const client of clients) client.end(true);
  for (const socket of sockets) socket.destroy();
  await server?.stop();
  if (dir) await removeTree(dir);
});

/** Sends `bytes` on a plain TCP connection and collects what comes back until the server closes it. */
function plainExchange(port: number, bytes: Buffer): Promise<{ answer: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = connectTcp(port, "127.0.0.1", () => socket.write(bytes));
    sockets.push(socket);
    const chunks: Buffer[] = [];
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("error", () => undefined);
    const timer = setTimeout(() => resolve({ answer: Buffer.concat(chunks), closed: false }), 10_000);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve({ answer: Buffer.concat(chunks), closed: true });
    });
  });
}

/** An MQTT 3.1.1 CONNECT with client id "x" and no credentials. */
const CONNECT = Buffer.from([0x10, 13, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 1, 0x78]);

function tlsConnection(port: number, trusted: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connectTls({ port, host: "127.0.0.1", ca: trusted }, () => resolve(socket));
    sockets.push(socket);
    socket.once("error", reject);
  });
}

function connectDevice(url: string, id: string, key: ReturnType<typeof generateKeyPair>, trusted = ca): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { clientId: id, username: id, password: createDeviceToken(id, key, new Date()), reconnectPeriod: 0, protocolVersion: 4, ca: trusted, servername: "localhost", connectTimeout: 10_000 });
    clients.push(client);
    client.once("connect", () => resolve(client));
    client.once("error", reject);
  });
}

describe("serve --tls-dir", () => {
  it("answers the admin API over HTTPS to a client that trusts the CA", async () => {
    expect(server.baseUrl).toBe(`https://127.0.0.1:${server.httpPort}`);
    const res = await server.api("/api/v1/devices");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ devices: [] });
    const byName = await server.fetch(`https://localhost:${server.httpPort}/healthz`);
    expect(byName.status).toBe(200);
  });

  it("is what the CLI talks to: --ca, APT_OSTREE_CA, or DATA/tls/ca.pem; another CA is refused with what to do", async () => {
    const cli = (args: string[], env: Record<string, string>) =>
      execa(process.execPath, [SERVER_CLI, "rollout", "list", "--json", "--server", server.baseUrl, ...args], { env: { APT_OSTREE_ADMIN_TOKEN: TEST_ADMIN_TOKEN, APT_OSTREE_DATA: join(dir, "nothing-here"), ...env }, extendEnv: false, reject: false });
    const tlsDir = join(dir, "tls");
    for (const [args, env] of [[["--ca", join(tlsDir, "ca.pem")], {}], [[], { APT_OSTREE_CA: join(tlsDir, "ca.pem") }], [[], { APT_OSTREE_DATA: dir }]] as const) {
      const result = await cli([...args], env);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual([]);
    }
    const other = join(dir, "other-ca", "ca.pem");
    const wrong = await cli(["--ca", other], {});
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr.trim()).toBe(`error: TLS to ${server.baseUrl}: the server's certificate is not signed by the CA in ${other} (UNABLE_TO_VERIFY_LEAF_SIGNATURE); the server uses another CA, or this is not the CA it uses: unable to verify the first certificate`);
    const none = await cli([], {});
    expect(none.exitCode).toBe(1);
    expect(none.stderr.trim()).toMatch(/^error: TLS to https:\/\/127\.0\.0\.1:\d+: the server's certificate is not signed by a CA this machine trusts \(\w+\); .*; pass --ca FILE \(the ca\.pem serve prints\) or set APT_OSTREE_CA: .*$/);
  });

  it("refuses a plain HTTP request on the HTTP port: no HTTP answer, the connection closed, the handshake failure counted", async () => {
    const before = await server.metric("aptostree_tls_handshake_failures_total", { listener: "http" });
    const { answer, closed } = await plainExchange(server.httpPort, Buffer.from(`GET /api/v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TEST_ADMIN_TOKEN}\r\n\r\n`));
    expect(closed).toBe(true);
    expect(answer.toString("latin1")).not.toContain("HTTP/1.1");
    await expect(fetch(`http://127.0.0.1:${server.httpPort}/healthz`)).rejects.toThrow();
    expect(await server.metric("aptostree_tls_handshake_failures_total", { listener: "http" })).toBeGreaterThan(before);
  });

  it("refuses a plain MQTT CONNECT on the MQTT port: no CONNACK, the connection closed, the handshake failure counted", async () => {
    const before = await server.metric("aptostree_tls_handshake_failures_total", { listener: "mqtt" });
    const { answer, closed } = await plainExchange(server.mqttPort, CONNECT);
    expect(closed).toBe(true);
    expect(answer.includes(0x20)).toBe(false);
    await until(async () => (await server.metric("aptostree_tls_handshake_failures_total", { listener: "mqtt" })) > before, "the failure to be counted", 5000);
  });

  it("refuses a client that does not trust the server's CA", async () => {
    const other = await readFile(join(dir, "other-ca", "ca.pem"), "utf8");
    await expect(tlsConnection(server.mqttPort, other)).rejects.toThrow(/self[- ]signed certificate in certificate chain|unable to verify|unable to get local issuer/);
    await expect(server.fetch(`https://localhost:${server.httpPort}/healthz`).then(() => tlsConnection(server.httpPort, other))).rejects.toThrow();
    await expect(connectDevice(`mqtts://127.0.0.1:${server.mqttPort}`, "dev-other-ca", generateKeyPair(), other)).rejects.toThrow();
  });

  it("lets an accepted device in with the mqtt package over mqtts:// and wss://", async () => {
    const key = generateKeyPair();
    // Unknown: enrolled as pending and refused (CONNACK 5, over TLS), then accepted by the operator.
    await expect(connectDevice(`mqtts://127.0.0.1:${server.mqttPort}`, "dev-tls", key)).rejects.toThrow(/Not authorized|Connection refused/);
    expect((await server.api("/api/v1/devices/dev-tls/accept", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status).toBe(200);
    const overTls = await connectDevice(`mqtts://127.0.0.1:${server.mqttPort}`, "dev-tls", key);
    await overTls.publishAsync("apt-ostree/devices/dev-tls/online", "online", { qos: 1, retain: true });
    await until(async () => (await (await server.api("/api/v1/devices/dev-tls")).json()).device.online === true, "the device to be online", 10_000);
    overTls.end(true);
    const overWss = await connectDevice(`wss://localhost:${server.mqttWsPort}/mqtt`, "dev-tls", key);
    expect(overWss.connected).toBe(true);
    overWss.end(true);
  });

  it("keeps the packet-size guard on the decrypted stream: a TLS client announcing a packet past the limit is cut", async () => {
    const before = await server.metric("aptostree_mqtt_dropped_total", { reason: "packet-too-large" });
    const socket = await tlsConnection(server.mqttPort, ca);
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    // A PUBLISH header declaring 10 MiB (Remaining Length 0x80 0x80 0x80 0x05), then a little of its body.
    socket.write(Buffer.concat([Buffer.from([0x30, 0x80, 0x80, 0x80, 0x05]), Buffer.alloc(1024)]));
    await closed;
    expect(await server.metric("aptostree_mqtt_dropped_total", { reason: "packet-too-large" })).toBe(before + 1);
  });

  it("counts TLS connections against the unauthenticated-per-address limit, before their handshake", async () => {
    const before = await server.metric("aptostree_mqtt_dropped_total", { reason: "too-many-unauthenticated-from-address" });
    const idle: Socket[] = [];
    for (let i = 0; i < UNAUTHENTICATED_PER_ADDRESS; i++) {
      // TCP connected, no ClientHello sent: each holds an unauthenticated slot.
      idle.push(await new Promise<Socket>((resolve) => {
        const socket = connectTcp(server.mqttPort, "127.0.0.1", () => resolve(socket));
        socket.on("error", () => undefined);
        sockets.push(socket);
      }));
    }
    await expect(tlsConnection(server.mqttPort, ca)).rejects.toThrow();
    expect(await server.metric("aptostree_mqtt_dropped_total", { reason: "too-many-unauthenticated-from-address" })).toBe(before + 1);
    // The broker's CONNECT timeout (3 s here) also ends a handshake that never starts.
    await until(() => idle.every((socket) => socket.destroyed || socket.readableEnded), "the idle connections to be cut", 10_000);
    for (const socket of idle) socket.destroy();
  });
});
