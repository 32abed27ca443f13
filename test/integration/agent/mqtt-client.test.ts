/**
 * The agent's own MQTT client against real brokers: mosquitto with apt-ostree's ACL, and aedes
 * (the embedded broker's library) for reconnects and the last will.
 */
import { readFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { createServer as createTlsServer } from "node:tls";
import { execa } from "execa";
import aedesModule from "aedes";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MqttClient, MqttNotConnectedError, type MqttClientOptions } from "../../../device/mqtt/client.ts";
import { DEFAULT_MAX_PACKET_BYTES, MqttPacketTooLargeError, MqttProtocolError } from "../../../device/mqtt/packets.ts";
import { startMosquitto, type RunningMosquitto } from "../../helpers/mosquitto.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";

let dir: string;
let mosquitto: RunningMosquitto;
const clients: MqttClient[] = [];

beforeAll(async () => {
  dir = await makeTempDir("mqtt-client");
  mosquitto = await startMosquitto(dir);
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end()));
  mosquitto?.stop();
  await removeTree(dir);
});

/** The client's socket (private: tests only). */
const socketOf = (created: MqttClient) => (created as unknown as { socket: Socket | null }).socket;
/** Whether the client stopped reading its socket. */
const clientPaused = (created: MqttClient) => socketOf(created)?.isPaused() ?? false;
/** Bytes the client wrote and the kernel has not taken yet. */
const bufferedBytes = (created: MqttClient) => socketOf(created)?.writableLength ?? 0;

function client(url: string, overrides: Partial<MqttClientOptions> = {}) {
  const messages: Array<{ topic: string; payload: string }> = [];
  const errors: Error[] = [];
  let connects = 0;
  const created = new MqttClient({
    url,
    connectPacket: () => ({ clientId: "dev-1", keepaliveSeconds: 60, clean: true }),
    connectTimeoutMs: 5000,
    minReconnectMs: 100,
    maxReconnectMs: 400,
    onConnect: () => connects++,
    onMessage: (topic, payload) => messages.push({ topic, payload: payload.toString() }),
    onError: (error) => errors.push(error),
    ...overrides,
  });
  clients.push(created);
  return { client: created, messages, errors, connects: () => connects };
}

describe("the agent's MQTT client", () => {
  it("talks to mosquitto: retained QoS 1 command in, QoS 1 report out", async () => {
    const observer = await mqtt.connectAsync(mosquitto.serverUrl, { clientId: "observer" });
    try {
      await observer.publishAsync("apt-ostree/devices/dev-1/cmd", "update!", { qos: 1, retain: true });
      const seen: string[] = [];
      await observer.subscribeAsync("apt-ostree/devices/dev-1/state", { qos: 1 });
      observer.on("message", (_t, payload) => seen.push(payload.toString()));

      const device = client(`mqtt://127.0.0.1:${mosquitto.port}`);
      await until(async () => device.client.connected, "the client to connect");
      await device.client.subscribe(["apt-ostree/devices/dev-1/cmd"], 1);
      await until(async () => device.messages.length === 1, "the retained command");
      expect(device.messages[0]).toEqual({ topic: "apt-ostree/devices/dev-1/cmd", payload: "update!" });

      await device.client.publish("apt-ostree/devices/dev-1/state", JSON.stringify({ state: "idle" }), { qos: 1 });
      await until(async () => seen.length === 1, "the observer to get the report");
      expect(JSON.parse(seen[0]!)).toEqual({ state: "idle" });

      await device.client.end();
      expect(device.client.connected).toBe(false);
      await expect(device.client.publish("apt-ostree/devices/dev-1/state", "x", { qos: 1 })).rejects.toThrow(MqttNotConnectedError);
    } finally {
      await observer.endAsync();
    }
  });

  it("reconnects with fresh credentials after the broker drops it; the will fires on a drop, not on end(); refused topics are named", async () => {
    const broker = aedesModule.createBroker();
    const passwords: string[] = [];
    broker.authenticate = (_client, _username, password, done) => {
      passwords.push(password?.toString() ?? "");
      done(null, true);
    };
    broker.authorizeSubscribe = (_client, subscription, done) => done(null, subscription.topic.startsWith("dev-2/") ? null : subscription);
    const wills: string[] = [];
    broker.on("publish", (packet) => {
      if (packet.topic === "dev-1/online") wills.push(packet.payload.toString());
    });
    const sockets: Socket[] = [];
    const server = createServer((socket) => {
      sockets.push(socket);
      broker.handle(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    try {
      let attempt = 0;
      const device = client(`mqtt://127.0.0.1:${port}`, {
        connectPacket: () => ({
          clientId: "dev-1", keepaliveSeconds: 60, clean: true, username: "dev-1", password: `token-${++attempt}`,
          will: { topic: "dev-1/online", payload: Buffer.from("offline"), qos: 1, retain: true },
        }),
      });
      await until(async () => device.connects() === 1, "the first connection");
      await device.client.subscribe(["dev-1/cmd"], 1);
      await expect(device.client.subscribe(["dev-1/x", "dev-2/cmd"], 1)).rejects.toThrow("the broker refused the subscription to dev-2/cmd");
      sockets[0]!.destroy();
      await until(async () => device.connects() === 2, "the reconnection");
      expect(passwords).toEqual(["token-1", "token-2"]);
      await until(async () => wills.includes("offline"), "the last will after the drop");
      await device.client.subscribe(["dev-1/cmd"], 1);
      broker.publish({ cmd: "publish", topic: "dev-1/cmd", payload: Buffer.from("after reconnect"), qos: 1, retain: false, dup: false }, () => {});
      await until(async () => device.messages.some((m) => m.payload === "after reconnect"), "a command after the reconnection");

      const willsBefore = wills.length;
      await device.client.end();
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(wills).toHaveLength(willsBefore);
      expect(device.connects()).toBe(2);
    } finally {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      server.close();
    }
  });

  it("drops a connection whose broker stops answering pings, and connects again", async () => {
    let connections = 0;
    const pings: number[] = [];
    const silent: Server = createServer((socket: Socket) => {
      const index = ++connections;
      socket.on("data", (chunk) => {
        if (chunk[0] === 0x10) socket.write(Buffer.from([0x20, 2, 0, 0]));
        if (chunk[0] === 0xc0) pings.push(index);
      });
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const device = client(`mqtt://127.0.0.1:${(silent.address() as { port: number }).port}`, {
        connectPacket: () => ({ clientId: "dev-1", keepaliveSeconds: 1, clean: true }),
      });
      await until(async () => connections === 2, "a second connection after the unanswered ping", 10_000);
      expect(pings).toContain(1);
      expect(device.errors.map((e) => e.message)).toContain("no PINGRESP within 1 s");
      await device.client.end();
    } finally {
      silent.close();
    }
  });

  it("drops a hostile broker's connection with a typed error and connects again: oversized, malformed and out-of-turn packets", async () => {
    const CONNACK = Buffer.from([0x20, 2, 0, 0]);
    const publish = (text: string) => Buffer.from([0x30, 3 + text.length, 0, 1, 0x74, ...Buffer.from(text)]);
    // What the broker answers each CONNECT with, connection by connection; the socket then stays open.
    const answers = [
      // A 1 MiB PUBLISH: only its header is sent; the client must not wait for the body.
      Buffer.concat([CONNACK, Buffer.from([0x30, 0x80, 0x80, 0x40])]),
      // A good PUBLISH, then a SUBACK granting QoS 3 in the same write.
      Buffer.concat([CONNACK, publish("before"), Buffer.from([0x90, 3, 0, 1, 3])]),
      // A PUBLISH before the CONNACK.
      Buffer.concat([publish("early"), CONNACK]),
      // A second CONNACK (each would start another ping timer and another onConnect).
      Buffer.concat([CONNACK, CONNACK]),
      CONNACK,
    ];
    let connections = 0;
    const hostile = createServer((socket) => {
      const answer = answers[Math.min(connections++, answers.length - 1)]!;
      socket.once("data", () => socket.write(answer));
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => hostile.listen(0, "127.0.0.1", resolve));
    try {
      const device = client(`mqtt://127.0.0.1:${(hostile.address() as { port: number }).port}`);
      await until(async () => connections === answers.length && device.client.connected, "the client to get through to the last, well-behaved connection", 10_000);
      const refusals = device.errors.filter((e) => e instanceof MqttProtocolError);
      expect(refusals.map((e) => e.message)).toEqual([
        `the broker sent a packet of 1048576 bytes, over the ${DEFAULT_MAX_PACKET_BYTES}-byte limit`,
        "SUBACK with return code 0x3 from the broker; 3.9.3 allows 0, 1, 2 and 0x80",
        "PUBLISH from the broker before its CONNACK",
        "a second CONNACK from the broker",
      ]);
      expect(refusals[0]).toBeInstanceOf(MqttPacketTooLargeError);
      expect(refusals[0]).toMatchObject({ code: "E_MQTT_PACKET_TOO_LARGE", declaredBytes: 1_048_576, limitBytes: DEFAULT_MAX_PACKET_BYTES });
      // The packet before the malformed one was delivered; nothing from before a CONNACK was.
      expect(device.messages).toEqual([{ topic: "t", payload: "before" }]);
      expect(device.connects()).toBe(4);
      await device.client.end();
    } finally {
      hostile.close();
    }
  });

  it("stops reading from a broker that floods QoS 1 publishes and never reads its PUBACKs: the write buffer stays bounded, and it connects again", async () => {
    const CONNACK = Buffer.from([0x20, 2, 0, 0]);
    // 1 MiB of 7-byte QoS 1 PUBLISHes on topic "t" with an empty payload: each asks for a 4-byte PUBACK.
    const packet = Buffer.from([0x32, 5, 0, 1, 0x74, 0, 1]);
    const flood = Buffer.alloc(Math.floor((1024 * 1024) / packet.length) * packet.length);
    for (let at = 0; at < flood.length; at += packet.length) packet.copy(flood, at);
    const FLOOD_BYTES = 24 * 1024 * 1024;
    let connections = 0;
    let floodWritten = 0;
    let first: Socket | null = null;
    const hostile = createServer((socket) => {
      const index = ++connections;
      socket.on("error", () => {});
      socket.once("data", () => {
        socket.write(CONNACK);
        if (index > 1) return void socket.write(Buffer.from([0x30, 8, 0, 1, 0x74, ...Buffer.from("after")]));
        first = socket;
        socket.pause(); // never reads again: the PUBACKs pile up
        const more = () => {
          while (floodWritten < FLOOD_BYTES) {
            floodWritten += flood.length;
            if (!socket.write(flood)) return void socket.once("drain", more);
          }
        };
        more();
      });
    });
    await new Promise<void>((resolve) => hostile.listen(0, "127.0.0.1", resolve));
    try {
      let publishes = 0;
      const after: string[] = [];
      const device = client(`mqtt://127.0.0.1:${(hostile.address() as { port: number }).port}`, {
        onMessage: (_topic, payload) => (payload.length === 0 ? publishes++ : after.push(payload.toString())),
      });
      // Either the broker got its whole flood through, or the client stopped reading it.
      await until(async () => floodWritten >= FLOOD_BYTES || clientPaused(device.client), "the flood to be sent or the client to stop reading", 30_000);
      const buffered = bufferedBytes(device.client);
      // A PUBACK per publish read: without backpressure the client holds ~4/7 of what it read beyond the kernel's buffers.
      expect(buffered).toBeLessThan(256 * 1024);
      expect(floodWritten).toBeLessThan(FLOOD_BYTES);
      // Still bounded a moment later: nothing more is read while nothing drains.
      const readSoFar = publishes;
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(publishes).toBe(readSoFar);
      expect(bufferedBytes(device.client)).toBeLessThan(256 * 1024);

      // The broker goes; the client connects again and works.
      (first as Socket | null)?.destroy();
      await until(async () => connections === 2 && after.length === 1, "the client to connect again and get a message", 10_000);
      expect(after).toEqual(["after"]);
      expect(device.client.connected).toBe(true);
      await device.client.end();
    } finally {
      hostile.close();
    }
  }, 60_000);

  it("says why the broker refused the connection, and refuses ws:// URLs", async () => {
    const refusing = createServer((socket) => socket.on("data", () => socket.write(Buffer.from([0x20, 2, 0, 5]))));
    await new Promise<void>((resolve) => refusing.listen(0, "127.0.0.1", resolve));
    try {
      const device = client(`mqtt://127.0.0.1:${(refusing.address() as { port: number }).port}`);
      await until(async () => device.errors.length > 0, "the refusal");
      expect(device.errors[0]!.message).toBe("the broker refused the connection: not authorized");
      await device.client.end();
    } finally {
      refusing.close();
    }
    expect(() => client("ws://127.0.0.1:1")).toThrow(/mqtt:\/\/ and mqtts:\/\/ only/);
  });

  it("speaks TLS to an mqtts:// broker: the handshake checks the broker's certificate", async () => {
    await execa("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=broker.test", "-keyout", join(dir, "broker.key"), "-out", join(dir, "broker.crt")]);
    const broker = createTlsServer({ key: await readFile(join(dir, "broker.key")), cert: await readFile(join(dir, "broker.crt")) }, (socket) => socket.end());
    await new Promise<void>((resolve) => broker.listen(0, "127.0.0.1", resolve));
    try {
      const device = client(`mqtts://127.0.0.1:${(broker.address() as { port: number }).port}`);
      await until(async () => device.errors.length > 0, "the certificate's refusal");
      // Self-signed and not in the trust store: refused by the client's TLS, not read as MQTT.
      expect(device.errors[0]!.message).toMatch(/^TLS to mqtts:\/\/127\.0\.0\.1:\d+: the server's certificate is not signed by a CA this machine trusts \(DEPTH_ZERO_SELF_SIGNED_CERT\)/);
      expect(device.connects()).toBe(0);
      await device.client.end();
    } finally {
      broker.close();
    }
  });
});
