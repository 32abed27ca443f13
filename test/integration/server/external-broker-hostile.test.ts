/**
 * A hostile external broker (`serve --mqtt-url`): the server is its client, and a packet whose
 * header declares 250 MiB is cut at the header, as a device's would be on the embedded broker.
 */
import { createServer, type Socket } from "node:net";
import mqttPacket from "mqtt-packet";
import { afterAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { Metrics } from "../../../server/http/metrics.ts";
import { connectExternalBroker } from "../../../server/mqtt/external.ts";
import { parseBrokerUrl } from "../../../server/mqtt/external-stream.ts";
import type { RunningBroker } from "../../../server/mqtt/broker.ts";
import { until } from "../../helpers/wait.ts";

const sockets: Socket[] = [];
let broker: RunningBroker | null = null;
let bytesReceivedAfterHeader = 0;
afterAll(async () => {
  await broker?.close().catch(() => undefined);
  for (const socket of sockets) socket.destroy();
});

/** Answers CONNECT and SUBSCRIBE, then announces a 250 MiB PUBLISH and trickles its body. */
function hostileBroker(): Promise<number> {
  const server = createServer((socket) => {
    sockets.push(socket);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on("packet", (packet) => {
      if (packet.cmd === "connect") socket.write(mqttPacket.generate({ cmd: "connack", returnCode: 0, sessionPresent: false }));
      if (packet.cmd === "subscribe") {
        socket.write(mqttPacket.generate({ cmd: "suback", messageId: packet.messageId, granted: packet.subscriptions.map(() => 1) }));
        // PUBLISH QoS 0, Remaining Length 250 MiB (0x80 0x80 0x80 0x7d), then a slow body.
        socket.write(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x7d]));
        const timer = setInterval(() => {
          if (socket.destroyed) return clearInterval(timer);
          socket.write(Buffer.alloc(64 * 1024), () => (bytesReceivedAfterHeader += 64 * 1024));
        }, 5);
      }
    });
    socket.on("data", (data) => parser.parse(data));
    socket.on("error", () => undefined);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port)));
}

describe("an external broker that sends a packet above the limit", () => {
  it("has its connection cut at the header, counted, without the body being held", async () => {
    const port = await hostileBroker();
    const metrics = new Metrics();
    broker = await connectExternalBroker({ url: `mqtt://server:secret@127.0.0.1:${port}`, prefix: "apt-ostree/", ingest: async () => undefined, log: silentLogger(), metrics, maxPacketBytes: 65536 });
    await until(() => /aptostree_mqtt_dropped_total\{reason="external-packet-too-large"\} [1-9]/.test(metrics.render()), "the connection to be cut");
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(sockets[0]!.destroyed || sockets[0]!.readableEnded).toBe(true);
    expect(bytesReceivedAfterHeader).toBeLessThan(16 * 1024 * 1024);
  });

  it("reads the broker's address and credentials from its URL", () => {
    expect(parseBrokerUrl("mqtt://apt-ostree-server:s%40cret@broker.example:1884")).toMatchObject({ protocol: "tcp", host: "broker.example", port: 1884, username: "apt-ostree-server", password: "s@cret" });
    expect(parseBrokerUrl("mqtts://broker.example")).toMatchObject({ protocol: "tls", port: 8883 });
    expect(parseBrokerUrl("wss://broker.example/mqtt")).toMatchObject({ protocol: "ws", port: 443, url: "wss://broker.example/mqtt" });
    expect(() => parseBrokerUrl("http://x")).toThrow(/not mqtt, mqtts, ws or wss/);
  });
});
