/**
 * An external broker (mosquitto, EMQX) instead of the embedded one: the server is a client
 * that subscribes to what devices publish and publishes signed commands. Device authentication
 * and topic ACLs are the broker's job (docs/mosquitto/ has a configuration); reports, hellos
 * and commands are signed end to end, so the broker is trusted with neither direction.
 */
import { randomBytes } from "node:crypto";
import mqtt from "mqtt";
import type { Logger } from "../../shared/log.ts";
import type { Metrics } from "../http/metrics.ts";
import type { RunningBroker } from "./broker.ts";
import type { Ingest } from "./ingest.ts";

export interface ExternalBrokerOptions {
  /** e.g. mqtt://apt-ostree-server:secret@broker.example:1883 */
  url: string;
  prefix: string;
  ingest: Ingest;
  log: Logger;
  metrics: Metrics;
}

export async function connectExternalBroker(options: ExternalBrokerOptions): Promise<RunningBroker> {
  const connected = options.metrics.gauge("aptostree_mqtt_external_connected", "1 while connected to the external broker");
  const client = await mqtt.connectAsync(options.url, {
    clientId: `apt-ostree-server-${randomBytes(4).toString("hex")}`,
    clean: true,
    reconnectPeriod: 2000,
    connectTimeout: 10_000,
    protocolVersion: 4,
  });
  connected(1);
  client.on("close", () => connected(0));
  client.on("connect", () => connected(1));
  client.on("error", (error) => options.log.warn({ event: "mqtt.external.error", err: error }, `external broker: ${error.message}`));
  client.on("message", (topic, payload) => {
    try {
      options.ingest(topic, payload, null);
    } catch (error) {
      options.log.error({ event: "mqtt.ingest.error", err: error, topic }, "failed to handle a device message");
    }
  });
  const topics = ["state", "online", "hello"].map((kind) => `${options.prefix}devices/+/${kind}`);
  const granted = await client.subscribeAsync(topics, { qos: 1 });
  const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
  if (refused.length > 0) throw new Error(`the external broker refused the server's subscriptions to ${refused.join(", ")}; grant it read access to ${options.prefix}#`);
  options.log.info({ event: "mqtt.external.connected", url: redactUrl(options.url) }, `connected to ${redactUrl(options.url)}`);
  return {
    port: null,
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
