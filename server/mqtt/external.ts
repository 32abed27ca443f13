/**
 * An external broker (mosquitto, EMQX) instead of the embedded one: the server is a client
 * that subscribes to what devices publish and publishes signed commands. Device authentication
 * and topic ACLs are the broker's job (docs/mosquitto/ has a configuration); reports, hellos
 * and commands are signed end to end, so the broker is trusted with neither direction.
 */
import { randomBytes } from "node:crypto";
import { MqttClient } from "mqtt";
import { openBrokerStream, parseBrokerUrl } from "./external-stream.ts";
import type { Logger } from "../../shared/log.ts";
import type { Metrics } from "../http/metrics.ts";
import type { RunningBroker } from "./broker.ts";
import type { Ingest } from "./ingest.ts";
import type { BrokerTls } from "./external-identity.ts";

export interface ExternalBrokerOptions {
  /** e.g. mqtt://apt-ostree-server:secret@broker.example:1883 */
  url: string;
  prefix: string;
  ingest: Ingest;
  log: Logger;
  metrics: Metrics;
  /** Largest packet accepted from the broker (limits.mqttMaxPacketBytes). */
  maxPacketBytes: number;
  /** For mqtts:// and wss://: the CA and client certificate to present, read at each (re)connect; absent: Node's CAs, no certificate. */
  tls?: () => BrokerTls;
}

/** `client`: the connection itself, for what else the server says to the broker (dynsec/sync.ts). */
export async function connectExternalBroker(options: ExternalBrokerOptions): Promise<RunningBroker & { client: MqttClient }> {
  const connected = options.metrics.gauge("aptostree_mqtt_external_connected", "1 while connected to the external broker");
  const dropped = options.metrics.counter("aptostree_mqtt_dropped_total", "Connections the broker cut for breaking a limit, by reason");
  const endpoint = parseBrokerUrl(options.url);
  const streamBuilder = () =>
    openBrokerStream(endpoint, options.maxPacketBytes, (error) => {
      dropped(1, { reason: "external-packet-too-large" });
      options.log.warn({ event: "mqtt.external.dropped", reason: error.message }, `cut the connection to the external broker: ${error.message}`);
    }, options.tls?.());
  const client = new MqttClient(streamBuilder, {
    clientId: `apt-ostree-server-${randomBytes(4).toString("hex")}`,
    username: endpoint.username,
    password: endpoint.password,
    clean: true,
    reconnectPeriod: 2000,
    connectTimeout: 10_000,
    protocolVersion: 4,
  });
  await new Promise<void>((resolve, reject) => {
    const fail = (error: Error) => {
      client.end(true);
      reject(error);
    };
    client.once("error", fail);
    client.once("connect", () => {
      client.off("error", fail);
      resolve();
    });
  });
  connected(1);
  client.on("close", () => connected(0));
  client.on("connect", () => connected(1));
  client.on("error", (error) => options.log.warn({ event: "mqtt.external.error", err: error }, `external broker: ${error.message}`));
  // Ingest never rejects (it logs and counts what it refuses).
  client.on("message", (topic, payload) => void options.ingest(topic, payload, null));
  // Every instance on this broker hears every device message, in the device's order (a shared
  // subscription would spread one device's messages over instances, out of order); the store
  // takes each report once (its counter, checked in the UPDATE) and the others count 'duplicate'.
  const topics = ["state", "online", "hello"].map((kind) => `${options.prefix}devices/+/${kind}`);
  const granted = await client.subscribeAsync(topics, { qos: 1 });
  const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
  if (refused.length > 0) throw new Error(`the external broker refused the server's subscriptions to ${refused.join(", ")}; grant it read access to ${options.prefix}#`);
  options.log.info({ event: "mqtt.external.connected", url: redactUrl(options.url) }, `connected to ${redactUrl(options.url)}`);
  return {
    port: null,
    client,
    publish: async (topic, payload, retain = false) => {
      await client.publishAsync(topic, payload, { qos: 1, retain });
    },
    close: async () => {
      await client.endAsync();
    },
  };
}

/** A broker URL fit for logs and messages: the password replaced by ***. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
}
