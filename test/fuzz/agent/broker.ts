/**
 * A broker on loopback that speaks just enough MQTT 3.1.1 to the agent (CONNACK, SUBACK, PUBACK,
 * PINGRESP), delivers whatever command bytes a case hands it, keeps the reports the agent
 * publishes, and can instead send garbage: on the live connection, or in place of the CONNACK of
 * the next one. It hangs up on a connection it sent garbage to once a second has passed, so a
 * stream the agent is still waiting on does not keep it from reconnecting.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import mqttPacket from "mqtt-packet";
import { connack, puback, publish, pingresp, suback } from "./broker-packets.ts";

export interface BrokerConnection {
  socket: Socket;
  opened: number;
  connected: boolean;
  subscribed: boolean;
  closed: boolean;
}

export interface ReceivedReport {
  at: number;
  state?: string;
  command?: string;
  error?: string;
}

export class FuzzBroker {
  url = "";
  /** The latest connections (the oldest are dropped past 200); `accepted` counts them all. */
  readonly connections: BrokerConnection[] = [];
  accepted = 0;
  readonly reports: ReceivedReport[] = [];
  /** Sent instead of the CONNACK on the next connection, once. */
  garbageInsteadOfConnack: Buffer | null = null;
  private server: Server | null = null;
  private nextPacketId = 1;

  constructor(readonly commandTopic: string) {}

  async start(): Promise<void> {
    this.server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `mqtt://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  /** The connection the agent subscribed on, if it is still open. */
  live(): BrokerConnection | null {
    const last = this.connections.at(-1);
    return last && last.subscribed && !last.closed ? last : null;
  }

  /** Publishes `payload` on the agent's command topic (QoS 1) on the live connection. */
  sendCommand(payload: Buffer): boolean {
    const live = this.live();
    if (!live) return false;
    this.nextPacketId = (this.nextPacketId % 0xffff) + 1;
    live.socket.write(publish(this.commandTopic, payload, { qos: 1, packetId: this.nextPacketId }));
    return true;
  }

  /** Writes `bytes` to the live connection and hangs up on it a second later. */
  sendGarbage(bytes: Buffer): BrokerConnection | null {
    const live = this.live();
    if (!live) return null;
    live.socket.write(bytes);
    setTimeout(() => live.socket.destroy(), 1000).unref();
    return live;
  }

  private accept(socket: Socket): void {
    const connection: BrokerConnection = { socket, opened: Date.now(), connected: false, subscribed: false, closed: false };
    this.connections.push(connection);
    this.accepted++;
    if (this.connections.length > 200) this.connections.splice(0, 100);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on("packet", (packet) => {
      switch (packet.cmd) {
        case "connect":
          if (this.garbageInsteadOfConnack) {
            socket.write(this.garbageInsteadOfConnack);
            this.garbageInsteadOfConnack = null;
            setTimeout(() => socket.destroy(), 1000).unref();
            return;
          }
          connection.connected = true;
          return void socket.write(connack(0));
        case "subscribe":
          if (packet.subscriptions.some((s) => s.topic === this.commandTopic)) connection.subscribed = true;
          return void socket.write(suback(packet.messageId ?? 0, packet.subscriptions.map(() => 1)));
        case "publish":
          if (packet.qos === 1) socket.write(puback(packet.messageId ?? 0));
          if (packet.topic.endsWith("/state")) this.keepReport(packet.payload);
          return;
        case "pingreq":
          return void socket.write(pingresp());
        default:
          return;
      }
    });
    parser.on("error", () => socket.destroy());
    socket.on("data", (chunk) => parser.parse(chunk));
    socket.on("error", () => undefined);
    socket.on("close", () => (connection.closed = true));
  }

  private keepReport(payload: Buffer | string): void {
    try {
      const { report } = JSON.parse(payload.toString()) as { report: ReceivedReport };
      this.reports.push({ at: Date.now(), state: report.state, command: report.command, error: report.error });
      if (this.reports.length > 500) this.reports.splice(0, 250);
    } catch {
      // Not a report: the agent's reports are signed JSON; a test of the server checks them.
    }
  }
}
