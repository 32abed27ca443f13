/**
 * The embedded broker (aedes on TCP) with apt-ostree's policy as its hooks, default deny, and
 * the ingestion of device reports and online flags into the store.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { WebSocketServer, createWebSocketStream } from "ws";
import type { AddressInfo } from "node:net";
import aedesModule, { type AuthenticateError, type Client } from "aedes";
import type { Logger } from "../../shared/log.ts";
import type { Report } from "../../shared/wire/report.ts";
import { createIngest } from "./ingest.ts";
import { KeyedSerial } from "../../shared/keyed-serial.ts";
import type { FleetStore } from "../fleet/store.ts";
import type { Metrics } from "../http/metrics.ts";
import { mayPublish, maySubscribe } from "./acl.ts";
import { parseTopic } from "../../shared/wire/topics.ts";
import { authenticateDevice } from "./auth.ts";
import { DeviceRateLimiter, deviceBudget } from "./device-rate.ts";
import { createEnrollment } from "./enrollment.ts";
import { ConnectionLimiter, type Admission } from "./connection-limits.ts";
import { guardConnection, PacketTooLargeError } from "./frame-guard.ts";
import type { ServerLimits } from "../config/limits.ts";
import { acceptTls, handshakeFailureCounter, secureContext, type TlsCredentials } from "../tls/listeners.ts";
import type { BrokerBackbone } from "./redis-backbone.ts";

export interface BrokerOptions {
  port: number;
  /** MQTT over WebSocket on its own port, path /mqtt; null for none. */
  wsPort: number | null;
  host: string;
  prefix: string;
  store: FleetStore;
  log: Logger;
  metrics: Metrics;
  /** Accept unknown devices that prove this fleet enrollment secret at once instead of leaving them pending; null: none. */
  autoAcceptSecret: Uint8Array | null;
  limits: ServerLimits;
  /** MQTT over TLS on `port` and WSS on `wsPort` with this certificate; null or absent: plain. */
  tls?: TlsCredentials | null;
  now?: () => Date;
  /**
   * Joins this broker to the other instances' (Redis): messages cross to devices connected
   * elsewhere, retained messages and last wills live in Redis. Absent: a broker of its own, in memory.
   */
  backbone?: BrokerBackbone | null;
  /** Called after a report is verified and stored. */
  onReport?: (report: Report) => void;
  /** Called when an accepted device comes online (it connected and was not online already). */
  onOnline?: (deviceId: string) => void;
}

export interface RunningBroker {
  /** Port of the embedded broker; null when an external broker is used. */
  port: number | null;
  /** Port of the WebSocket listener (path /mqtt), when there is one. */
  wsPort?: number | null;
  /** Publishes a (signed) payload to a topic from the server itself. */
  publish(topic: string, payload: string, retain?: boolean): Promise<void>;
  /** Ends a device's connection, without its last will; false when it has none here (or the broker is external). */
  disconnect?(deviceId: string): boolean;
  close(): Promise<void>;
}

type Aedes = ReturnType<typeof aedesModule.createBroker>;

/** The server's own bus topic asking every joined broker to end a device's connection. */
const DISCONNECT_TOPIC = "$apt-ostree/disconnect";
/** Well past the Redis round trips of a closing connection's will deletion. */
const WILL_RESTORE_DELAY_MS = 2000;

/** A CONNECT refused, with its CONNACK return code (MQTT 3.1.1 §3.2.2.3: 3 unavailable, 4 bad credentials, 5 not authorized). */
class ConnectRefused extends Error {
  constructor(reason: string, readonly returnCode: 3 | 4 | 5) {
    super(reason);
  }
}

export async function startBroker(options: BrokerOptions): Promise<RunningBroker> {
  const now = options.now ?? (() => new Date());
  const { store, log, prefix } = options;
  const connections = options.metrics.gauge("aptostree_mqtt_connections", "Devices connected to the embedded broker");
  const refused = options.metrics.counter("aptostree_mqtt_connections_refused_total", "MQTT connections refused, by reason code");
  const denied = options.metrics.counter("aptostree_mqtt_denied_total", "Publishes and subscriptions the ACL refused");
  // Per connection, not per client id: a device that reconnects before its old connection closed
  // (a reset leaves the TCP session half-open) takes the id over. The superseded connection's
  // close and last will then say nothing about the device, which is online on the new one.
  const deviceOf = new WeakMap<object, string>();
  const connectionOf = new Map<string, Client>();
  /** Connections the server ended (a device rejected or deleted) or a newer one of the device replaced: their last will is not published. */
  const ended = new WeakSet<object>();
  const dropped = options.metrics.counter("aptostree_mqtt_dropped_total", "Connections the broker cut for breaking a limit, by reason");
  const handlerErrors = options.metrics.counter("aptostree_mqtt_handler_errors_total", "Broker events whose handling failed (see the log), by event");
  const limiter = new ConnectionLimiter({
    maxConnections: options.limits.mqttMaxConnections,
    maxConnectionsPerAddress: options.limits.mqttMaxConnectionsPerAddress,
    maxUnauthenticatedPerAddress: options.limits.mqttMaxUnauthenticatedPerAddress,
    maxUnauthenticated: options.limits.mqttMaxUnauthenticated,
  });
  const admissionOf = new WeakMap<object, Admission>();
  const failed = (event: string, error: unknown): void => {
    handlerErrors(1, { event });
    log.error({ event: "mqtt.handler.error", on: event, err: error }, `handling the broker's ${event} event failed; the message was dropped`);
  };
  /** A throw (or a rejection) inside a broker event would end the process: every handler goes through this. */
  const guarded = <A extends unknown[]>(event: string, handler: (...args: A) => void | Promise<void>) => (...args: A): void => {
    try {
      void Promise.resolve(handler(...args)).catch((error: unknown) => failed(event, error));
    } catch (error) {
      failed(event, error);
    }
  };
  // A device's online flags and messages reach the store in the order the broker saw them, one
  // at a time, whatever the store's latency (a networked database answers out of order otherwise).
  const inOrder = new KeyedSerial();
  const enroll = createEnrollment({ store, metrics: options.metrics, log, autoAcceptSecret: options.autoAcceptSecret, maxPendingDevices: options.limits.maxPendingDevices, maxDevices: options.limits.maxDevices });
  // One budget per device for its connections and its messages (issue 18, finding 4).
  const budget = deviceBudget(new DeviceRateLimiter({ burst: options.limits.deviceMessageBurst, perMinute: options.limits.deviceMessagesPerMinute, now: () => now().getTime() }), options.metrics, log);
  const ingest = createIngest({ store, prefix, log, metrics: options.metrics, autoAcceptSecret: options.autoAcceptSecret, limits: options.limits, budget, enroll, now, onReport: options.onReport, onOnline: options.onOnline, order: inOrder });

  const authenticate = async (client: Client, username: string | undefined, password: Buffer | undefined): Promise<void> => {
    let decision = await authenticateDevice({ clientId: client.id, username, password }, now(), enroll);
    // A last will is stored at CONNECT and, when the broker holding it dies, published by another
    // without the ACL's say: only the device's own online flag is taken.
    const will = (client as Client & { _will?: { topic: string; qos: number } | null })._will;
    if (decision.ok && will && !(parseTopic(prefix, will.topic)?.kind === "online" && mayPublish(prefix, decision.deviceId, will.topic) && will.qos < 2)) {
      decision = { ok: false, returnCode: 5, reason: `a last will may only set the device's own online flag, not ${will.topic.slice(0, 256)}` };
    }
    if (decision.ok && !budget(decision.deviceId, "connect")) decision = { ok: false, returnCode: 3, reason: `device '${decision.deviceId}' connects too often; try again later` };
    if (decision.ok) {
      deviceOf.set(client, decision.deviceId);
      // A reconnection over a half-open connection: the old one's close must not say "offline".
      const previous = connectionOf.get(decision.deviceId);
      if (previous && previous !== client) ended.add(previous);
      return;
    }
    refused(1, { code: String(decision.returnCode) });
    log.warn({ event: "mqtt.connect.refused", clientId: client.id, reason: decision.reason }, `refused ${client.id}: ${decision.reason}`);
    throw new ConnectRefused(decision.reason, decision.returnCode);
  };

  const authorizeSubscribe = async (client: Client, topic: string): Promise<boolean> => {
    const deviceId = deviceOf.get(client);
    // Each topic filter of a SUBSCRIBE costs a lookup: charged to the device's budget first, so
    // a packet of thousands of filters is refused cheaply (the budget logs once per flood).
    if (!deviceId || !budget(deviceId, "subscribe")) {
      denied(1, { action: "subscribe" });
      return false;
    }
    const device = await store.getDevice(deviceId);
    if (device && maySubscribe(prefix, device, topic)) return true;
    denied(1, { action: "subscribe" });
    // Group topics open for the groups the operator assigned, not those the device's config
    // names: an agent asking for a group it was not put in is expected, not an attack.
    const unassignedGroup = parseTopic(prefix, topic)?.scope === "group";
    log[unassignedGroup ? "info" : "warn"]({ event: "mqtt.subscribe.denied", clientId: client.id, topic }, `denied subscription to ${topic}${unassignedGroup ? " (a group the operator has not assigned to the device)" : ""}`);
    return false;
  };

  const backbone = options.backbone ?? null;
  // Registered before aedes's own handler: when a device's id connects to another joined broker,
  // its connection here is closed by aedes and must then say nothing about the device.
  backbone?.mq.on("$SYS/+/new/clients", (packet, done) => {
    const clientId = String(packet.payload);
    if (packet.topic.split("/")[1] !== broker.id && connectionOf.has(clientId)) {
      ended.add(connectionOf.get(clientId)!);
      connectionOf.delete(clientId);
    }
    done();
  });
  backbone?.mq.on(DISCONNECT_TOPIC, (packet, done) => {
    endConnection(String(packet.payload));
    done();
  });

  const broker: Aedes = aedesModule.createBroker({
    ...(backbone ? { mq: backbone.mq, persistence: backbone.persistence, heartbeatInterval: backbone.heartbeatIntervalMs } as object : {}),
    connectTimeout: options.limits.mqttConnectTimeoutSeconds * 1000,
    authenticate(client, username, password, done) {
      authenticate(client, username, password).then(
        () => done(null, true),
        (error: unknown) => {
          if (error instanceof ConnectRefused) return done(error as unknown as AuthenticateError, false);
          log.error({ event: "mqtt.auth.error", err: error }, "authentication failed; refusing");
          return done(new ConnectRefused("server unavailable", 3) as unknown as AuthenticateError, false);
        },
      );
    },
    authorizePublish(client, packet, callback) {
      // The server's own publishes (client null) are trusted; a device only under its own topics.
      if (client === null) return callback(null);
      if (ended.has(client)) return callback(new Error("the server ended this connection"));
      const deviceId = deviceOf.get(client);
      // aedes keeps a QoS 2 message in memory until PUBREL and only then emits it: a device that
      // never sends PUBREL could hoard 64 KiB per packet id, uncharged. Devices publish at QoS 0/1.
      if (packet.qos === 2) {
        denied(1, { action: "publish-qos2" });
        log.warn({ event: "mqtt.publish.denied", clientId: client.id, reason: "qos 2" }, `denied a QoS 2 publish from ${client.id}: devices publish at QoS 0 or 1`);
        return callback(new Error("QoS 2 is not accepted from devices"));
      }
      if (deviceId && mayPublish(prefix, deviceId, packet.topic)) return callback(null);
      denied(1, { action: "publish" });
      log.warn({ event: "mqtt.publish.denied", clientId: client.id, topic: packet.topic }, `denied publish to ${packet.topic}`);
      return callback(new Error(`not allowed to publish to ${packet.topic}`));
    },
    authorizeSubscribe(client, subscription, callback) {
      authorizeSubscribe(client, subscription.topic).then(
        (allowed) => callback(null, allowed ? subscription : null),
        (error: unknown) => {
          failed("subscribe", error);
          callback(null, null);
        },
      );
    },
  });

  broker.on("client", guarded("client", (client) => {
    admissionOf.get(client.conn)?.authenticated();
    connections(broker.connectedClients);
    const deviceId = deviceOf.get(client);
    if (deviceId) {
      connectionOf.set(deviceId, client);
      backbone?.markPresent(deviceId, broker.id);
      return inOrder.run(deviceId, async () => {
        if (await store.setOnline(deviceId, true, now())) options.onOnline?.(deviceId);
      });
    }
  }));
  broker.on("clientDisconnect", guarded("clientDisconnect", (client) => {
    const deviceId = deviceOf.get(client);
    connections(broker.connectedClients);
    if (deviceId && ended.has(client) && backbone) keepWillOfCurrent(deviceId);
    if (deviceId && connectionOf.get(deviceId) === client && !ended.has(client)) {
      connectionOf.delete(deviceId);
      return inOrder.run(deviceId, async () => void (await store.setOnline(deviceId, false, now())));
    }
  }));
  const willOfDeadBroker = createWillCheck(options, connectionOf, () => broker, backbone);
  broker.on("publish", guarded("publish", async (packet, client) => {
    if (!client) {
      // The last will of a device whose broker died, published by this one (joined brokers only).
      const deviceId = await willOfDeadBroker(packet.topic, packet.payload as Buffer);
      if (deviceId) return ingest(packet.topic, packet.payload as Buffer, deviceId);
      return;
    }
    const deviceId = deviceOf.get(client);
    if (deviceId && connectionOf.get(deviceId) === client) return ingest(packet.topic, packet.payload as Buffer, deviceId);
  }));
  /**
   * The replaced connection's close deletes the device's stored will after this event, under
   * the same key as the new connection's (aedes-persistence-redis keys wills by broker and
   * client id): without it, a broker dying later would leave the device online for ever. The
   * delete follows a Redis round trip or two: the current connection's will is stored again after.
   */
  function keepWillOfCurrent(deviceId: string): void {
    setTimeout(() => {
      const current = connectionOf.get(deviceId) as (Client & { will?: unknown }) | undefined;
      if (current?.will) ((broker as unknown as { persistence: unknown }).persistence as { putWill(client: Client, will: unknown, done: () => void): void }).putWill(current, current.will, () => undefined);
    }, WILL_RESTORE_DELAY_MS).unref();
  }
  // A failure in aedes's own background work (the dead brokers' wills sweep, with Redis away): counted, logged, survived.
  (broker as unknown as NodeJS.EventEmitter).on("error", (error: Error) => {
    handlerErrors(1, { event: "broker" });
    log.warn({ event: "mqtt.broker.error", reason: error.message }, `broker: ${error.message}`);
  });
  // Malformed packets, a CONNECT that never came, a protocol violation: counted, logged at debug
  // (a stranger can produce any number of them).
  const connectionErrors = options.metrics.counter("aptostree_mqtt_connection_errors_total", "Connections closed for a protocol error or timeout, before or after CONNECT");
  broker.on("connectionError", (_client, error) => {
    connectionErrors(1, { phase: "before-connect" });
    log.debug({ event: "mqtt.connection.error", reason: error.message }, `connection closed before CONNECT: ${error.message}`);
  });
  broker.on("clientError", (client, error) => {
    connectionErrors(1, { phase: "after-connect" });
    log.debug({ event: "mqtt.client.error", clientId: client.id, reason: error.message }, `client ${client.id}: ${error.message}`);
  });

  /** Admits a connection under the limits and hands it to the broker behind the packet-size guard. */
  const accept = (connection: Duplex, address: string, close: () => void): void => {
    const admission = limiter.admit(address);
    if (typeof admission === "string") {
      dropped(1, { reason: admission });
      log.warn({ event: "mqtt.connection.dropped", address, reason: admission }, `dropped a connection from ${address}: ${admission}`);
      return close();
    }
    const guardedConnection = guardConnection(connection, {
      maxPacketBytes: options.limits.mqttMaxPacketBytes,
      onViolation: (error) => {
        dropped(1, { reason: error instanceof PacketTooLargeError ? "packet-too-large" : "malformed-length" });
        log.warn({ event: "mqtt.connection.dropped", address, reason: error.message }, `dropped a connection from ${address}: ${error.message}`);
      },
    });
    guardedConnection.once("close", () => admission.release());
    admissionOf.set(guardedConnection, admission);
    broker.handle(guardedConnection);
  };

  // With TLS the limits count the connection before its handshake, and the guard reads the
  // decrypted stream; the broker's CONNECT timeout also bounds a handshake that never ends.
  const context = options.tls ? secureContext(options.tls) : null;
  const handshakeFailed = handshakeFailureCounter(options.metrics, log);
  const server: Server = createServer((socket: Socket) => {
    const address = socket.remoteAddress ?? "unknown";
    accept(context ? acceptTls(socket, context, (error) => handshakeFailed("mqtt", address, error)) : socket, address, () => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  // A dedicated HTTP server: ws answers 400 to any other upgrade, which must not reach the repo's
  // HTTP server (curl, under ostree, asks to upgrade plain HTTP to h2c).
  const notMqtt = (_req: IncomingMessage, res: ServerResponse) => res.writeHead(426, { upgrade: "websocket" }).end("MQTT over WebSocket: connect to /mqtt\n");
  const wsServer = options.wsPort === null ? null
    : options.tls ? createHttpsServer({ ...options.tls, handshakeTimeout: options.limits.mqttConnectTimeoutSeconds * 1000 }, notMqtt)
    : createHttpServer(notMqtt);
  if (options.tls) wsServer?.on("tlsClientError", (error, socket) => handshakeFailed("mqtt-ws", socket.remoteAddress ?? "unknown", error));
  // One MQTT packet per WebSocket message at most, and ws's own default is 100 MiB.
  const webSockets = wsServer ? new WebSocketServer({ server: wsServer, path: "/mqtt", maxPayload: options.limits.mqttMaxPacketBytes }) : null;
  webSockets?.on("connection", (socket, request) => accept(createWebSocketStream(socket), request.socket.remoteAddress ?? "unknown", () => socket.terminate()));
  if (wsServer) {
    await new Promise<void>((resolve, reject) => {
      wsServer.once("error", reject);
      wsServer.listen(options.wsPort!, options.host, () => resolve());
    });
  }
  const wsPort = wsServer ? (wsServer.address() as AddressInfo).port : null;
  const secure = options.tls ? " over TLS" : "";
  log.info({ event: "mqtt.started", port, wsPort, tls: Boolean(options.tls) }, `MQTT${secure} on ${options.host}:${port}${wsPort ? `, WebSocket${secure} on ${wsPort}/mqtt` : ""}`);

  function endConnection(deviceId: string): boolean {
    const client = connectionOf.get(deviceId);
    if (!client) return false;
    connectionOf.delete(deviceId);
    ended.add(client);
    client.close();
    connections(broker.connectedClients);
    return true;
  }

  return {
    port,
    wsPort,
    publish: (topic, payload, retain = false) =>
      new Promise((resolve, reject) =>
        broker.publish({ cmd: "publish", topic, payload: Buffer.from(payload), qos: 1, retain, dup: false }, (error) => (error ? reject(error) : resolve())),
      ),
    disconnect: (deviceId) => {
      // The device may be connected to another joined broker: each ends it where it is.
      if (backbone) {
        backbone.mq.emit({ topic: DISCONNECT_TOPIC, payload: Buffer.from(deviceId) }, (error) => {
          if (error) log.error({ event: "mqtt.disconnect.broadcast-failed", deviceId, reason: error.message }, `could not ask the other instances to end ${deviceId}'s connection (${error.message}); it ends at its next connection`);
        });
      }
      return endConnection(deviceId);
    },
    close: async () => {
      for (const client of webSockets?.clients ?? []) client.terminate();
      webSockets?.close();
      await new Promise<void>((resolve) => (wsServer ? wsServer.close(() => resolve()) : resolve()));
      await new Promise<void>((resolve) => broker.close(() => server.close(() => resolve())));
      await backbone?.close();
    },
  };
}

/**
 * A joined broker publishes the stored last wills of a broker that stopped beating (aedes), also
 * for devices that have since connected to a live one: those must stay online. Answers the
 * device whose will it is when the broker it last connected to is not a live one, else null. Wills are refused at CONNECT unless they set the device's own
 * online flag, so this only ever says "offline".
 */
function createWillCheck(options: BrokerOptions, local: Map<string, Client>, broker: () => Aedes, backbone: BrokerBackbone | null) {
  return async (topic: string, payload: Buffer): Promise<string | null> => {
    if (!backbone) return null;
    const parsed = parseTopic(options.prefix, topic);
    if (parsed?.scope !== "device" || parsed.kind !== "online" || payload.toString() !== "offline") return null;
    if (local.has(parsed.deviceId)) return null;
    const live = Object.keys((broker() as unknown as { brokers: Record<string, number> }).brokers).concat(broker().id);
    const at = await backbone.presentOn(parsed.deviceId);
    if (at !== null && live.includes(at)) return null;
    options.log.info({ event: "mqtt.will.dead-broker", deviceId: parsed.deviceId }, `${parsed.deviceId} went offline with the broker instance it was connected to`);
    return parsed.deviceId;
  };
}
