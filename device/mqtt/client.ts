/**
 * A small MQTT 3.1.1 client for the device agent: one connection over TCP or TLS, QoS 0/1
 * publish and subscribe, keepalive pings, and reconnection with doubling backoff. The agent's
 * idle memory budget leaves no room for mqtt.js (docs/BENCHMARKS.md); the server and the
 * tests' simulated devices keep using mqtt.js.
 *
 * Unacknowledged QoS 1 publishes are rejected when the connection drops, not queued: the
 * caller (the agent's reporter) keeps what it must send again.
 *
 * The broker is not trusted: a packet over `maxPacketBytes`, a malformed one, one a server may
 * not send, or one out of turn (anything before the CONNACK, a second CONNACK) ends the
 * connection with an `MqttProtocolError` to `onError`, and the client connects again with the
 * same backoff as after any other connection error.
 *
 * Nor is it trusted to read: each QoS 1 PUBLISH is answered with a PUBACK, so a broker that
 * floods publishes and never reads would grow the socket's write buffer without end. Once more
 * than WRITE_BUFFER_PAUSE_BYTES wait to be sent, the client stops reading until the socket drains;
 * a broker that never reads again gets no PINGRESP read either, and keepalive drops it.
 */
import { readFile } from "node:fs/promises";
import { isIP, connect as netConnect, type Socket } from "node:net";
import { explainTlsFailure, TlsError } from "../../shared/tls/describe-failure.ts";
import {
  CONNACK_REFUSALS, DEFAULT_MAX_PACKET_BYTES, DISCONNECT, encodeConnect, encodePublish, encodePuback, encodeSubscribe, MqttProtocolError, PacketReader, PINGREQ, SUBACK_FAILURE,
  type ConnectPacket, type IncomingPacket, type Qos,
} from "./packets.ts";

/** Bytes waiting in the socket's write buffer above which the client stops reading from the broker. */
export const WRITE_BUFFER_PAUSE_BYTES = 64 * 1024;

export interface MqttClientOptions {
  /** mqtt://host[:port] or mqtts://host[:port]; user:password in the URL are used unless `connectPacket` sets them. */
  url: string;
  /**
   * PEM file of the one CA an mqtts:// broker's certificate must chain to (Node's bundled CAs are
   * then not trusted), read at every connect; absent: Node's CAs. Unused for mqtt://.
   */
  caFile?: string;
  /**
   * For mqtts:// to a broker that authenticates clients by certificate: the certificate and key
   * (PEM) to present, asked for before every (re)connect; a rejection is reported to `onError` and
   * the client tries again after its backoff. Absent: no client certificate.
   */
  tlsCredentials?: () => Promise<{ cert: string; key: string }>;
  /** Called before every (re)connect, so credentials such as signed tokens are fresh. */
  connectPacket: () => ConnectPacket;
  connectTimeoutMs: number;
  minReconnectMs: number;
  maxReconnectMs: number;
  /**
   * Largest Remaining Length accepted from the broker, checked as soon as a packet's header is
   * in (default DEFAULT_MAX_PACKET_BYTES: 65 KiB, a 64 KiB command with its topic).
   */
  maxPacketBytes?: number;
  onConnect: () => void;
  onMessage: (topic: string, payload: Buffer) => void;
  onError: (error: Error) => void;
}

export class MqttNotConnectedError extends Error {
  constructor() {
    super("not connected to the broker");
  }
}

interface Pending {
  resolve: (value: IncomingPacket) => void;
  reject: (error: Error) => void;
}

export class MqttClient {
  private socket: Socket | null = null;
  private ready = false;
  private ended = false;
  private reconnectMs: number;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private awaitingPong = false;
  private nextPacketId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly url: URL;

  constructor(private readonly options: MqttClientOptions) {
    this.url = new URL(options.url);
    if (this.url.protocol !== "mqtt:" && this.url.protocol !== "mqtts:") throw new RangeError(`${options.url}: the agent speaks mqtt:// and mqtts:// only`);
    this.reconnectMs = options.minReconnectMs;
    void this.open();
  }

  get connected(): boolean {
    return this.ready;
  }

  async publish(topic: string, payload: Buffer | string, options: { qos: Qos; retain?: boolean }): Promise<void> {
    const bytes = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
    if (options.qos === 0) {
      this.send(encodePublish(topic, bytes, { qos: 0, retain: options.retain ?? false }));
      return;
    }
    await this.request((packetId) => encodePublish(topic, bytes, { qos: 1, retain: options.retain ?? false, packetId }));
  }

  /** Subscribes at `qos`; rejects when the broker refuses any of the topics (SUBACK 0x80). */
  async subscribe(topics: string[], qos: Qos): Promise<void> {
    const ack = await this.request((packetId) => encodeSubscribe(packetId, topics, qos));
    if (ack.type !== "suback") throw new MqttProtocolError(`expected SUBACK, got ${ack.type}`);
    const refused = topics.filter((_, i) => ack.granted[i] === SUBACK_FAILURE);
    if (refused.length > 0) throw new Error(`the broker refused the subscription to ${refused.join(", ")}`);
  }

  /** Disconnects cleanly (no last will) and stops reconnecting. */
  async end(): Promise<void> {
    this.ended = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const socket = this.socket;
    if (!socket) return;
    if (this.ready) socket.write(DISCONNECT);
    await new Promise<void>((resolve) => {
      socket.once("close", () => resolve());
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    });
  }

  private async open(): Promise<void> {
    const port = Number(this.url.port) || (this.url.protocol === "mqtts:" ? 8883 : 1883);
    const host = this.url.hostname.replace(/^\[|\]$/g, "");
    let socket: Socket;
    if (this.url.protocol === "mqtts:") {
      let ca: Buffer | undefined;
      if (this.options.caFile !== undefined) {
        try {
          ca = await readFile(this.options.caFile);
        } catch (error) {
          if (this.ended) return;
          this.options.onError(new TlsError(`cannot read the CA certificate ${this.options.caFile} (caFile) that ${this.url.host} must be signed by: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}; put the fleet's CA there (image build --ca) or point caFile at it`, error));
          return this.reconnectLater();
        }
      }
      let credentials: { cert: string; key: string } | undefined;
      if (this.options.tlsCredentials) {
        try {
          credentials = await this.options.tlsCredentials();
        } catch (error) {
          if (this.ended) return;
          this.options.onError(error as Error);
          return this.reconnectLater();
        }
      }
      // node:tls costs ~1.3 MiB of RSS once loaded: only an mqtts:// agent pays for it.
      const { connect: tlsConnect } = await import("node:tls");
      if (this.ended) return;
      // The certificate is checked against the URL's host: servername for a DNS name, IP SANs for an address.
      socket = tlsConnect({ host, port, ...(isIP(host) ? {} : { servername: host }), ...(ca ? { ca } : {}), ...credentials });
    } else socket = netConnect({ host, port });
    this.socket = socket;
    const reader = new PacketReader(this.options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES);
    let keepaliveSeconds = 0;
    const connectTimer = setTimeout(() => socket.destroy(new Error(`no CONNACK within ${this.options.connectTimeoutMs} ms`)), this.options.connectTimeoutMs);
    socket.once(this.url.protocol === "mqtts:" ? "secureConnect" : "connect", () => {
      socket.setNoDelay(true);
      const connect = this.withUrlCredentials(this.options.connectPacket());
      keepaliveSeconds = connect.keepaliveSeconds;
      socket.write(encodeConnect(connect));
    });
    let connacked = false;
    socket.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk, (received) => {
          if (socket.destroyed) return;
          // MQTT-3.2.0-1: the server's first packet is the CONNACK, and it sends one.
          if (received.type === "connack") {
            if (connacked) throw new MqttProtocolError("a second CONNACK from the broker");
            connacked = true;
            clearTimeout(connectTimer);
          } else if (!connacked) throw new MqttProtocolError(`${received.type.toUpperCase()} from the broker before its CONNACK`);
          this.handle(received, socket, keepaliveSeconds);
        });
      } catch (error) {
        socket.destroy(error as Error);
        return;
      }
      // Backpressure: the PUBACKs for this chunk are queued; read no more until they are sent.
      if (socket.writableLength > WRITE_BUFFER_PAUSE_BYTES && !socket.isPaused()) {
        socket.pause();
        socket.once("drain", () => socket.resume());
      }
    });
    const trust = this.options.caFile !== undefined ? `the CA in ${this.options.caFile}` : "a CA this machine trusts";
    socket.on("error", (error) => this.options.onError(explainTlsFailure(error, `${this.url.protocol}//${this.url.host}`, trust) as Error));
    socket.on("close", () => {
      clearTimeout(connectTimer);
      this.closed(socket);
    });
  }

  private withUrlCredentials(connect: ConnectPacket): ConnectPacket {
    if (connect.username !== undefined || !this.url.username) return connect;
    return { ...connect, username: decodeURIComponent(this.url.username), ...(this.url.password ? { password: decodeURIComponent(this.url.password) } : {}) };
  }

  private handle(received: IncomingPacket, socket: Socket, keepaliveSeconds: number): void {
    switch (received.type) {
      case "connack": {
        if (received.returnCode !== 0) {
          socket.destroy(new Error(`the broker refused the connection: ${CONNACK_REFUSALS[received.returnCode] ?? `return code ${received.returnCode}`}`));
          return;
        }
        this.ready = true;
        this.reconnectMs = this.options.minReconnectMs;
        this.startPings(socket, keepaliveSeconds);
        this.options.onConnect();
        return;
      }
      case "publish":
        if (received.qos === 2) throw new MqttProtocolError(`the broker sent QoS 2 on ${received.topic}, above the QoS 1 subscribed`);
        if (received.qos === 1) socket.write(encodePuback(received.packetId!));
        this.options.onMessage(received.topic, received.payload);
        return;
      case "puback":
      case "suback": {
        const waiting = this.pending.get(received.packetId);
        this.pending.delete(received.packetId);
        waiting?.resolve(received);
        return;
      }
      case "pingresp":
        this.awaitingPong = false;
    }
  }

  private startPings(socket: Socket, keepaliveSeconds: number): void {
    if (keepaliveSeconds === 0) return;
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.awaitingPong = false;
    this.pingTimer = setInterval(() => {
      if (this.awaitingPong) return void socket.destroy(new Error(`no PINGRESP within ${keepaliveSeconds} s`));
      this.awaitingPong = true;
      socket.write(PINGREQ);
    }, keepaliveSeconds * 1000);
  }

  private closed(socket: Socket): void {
    if (this.socket !== socket) return;
    this.socket = null;
    this.ready = false;
    if (this.pingTimer) clearInterval(this.pingTimer);
    for (const waiting of this.pending.values()) waiting.reject(new MqttNotConnectedError());
    this.pending.clear();
    this.reconnectLater();
  }

  private reconnectLater(): void {
    if (this.ended) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.open();
    }, this.reconnectMs);
    this.reconnectMs = Math.min(this.options.maxReconnectMs, this.reconnectMs * 2);
  }

  private send(bytes: Buffer): void {
    if (!this.ready || !this.socket) throw new MqttNotConnectedError();
    this.socket.write(bytes);
  }

  private request(encode: (packetId: number) => Buffer): Promise<IncomingPacket> {
    if (!this.ready || !this.socket) return Promise.reject(new MqttNotConnectedError());
    const packetId = this.allocatePacketId();
    return new Promise<IncomingPacket>((resolve, reject) => {
      this.pending.set(packetId, { resolve, reject });
      this.socket!.write(encode(packetId));
    });
  }

  private allocatePacketId(): number {
    for (;;) {
      const id = this.nextPacketId;
      this.nextPacketId = id === 0xffff ? 1 : id + 1;
      if (!this.pending.has(id)) return id;
    }
  }
}
