/**
 * The agent's MQTT connection: authenticates with a fresh signed token on every (re)connect
 * (as the password on the embedded broker, or published as a hello through an external one),
 * keeps an online flag with a last will, subscribes to its own and its groups' command topics,
 * and reconnects with backoff (mqtt.js' reconnectPeriod, doubled up to 5 minutes).
 */
import mqtt, { type MqttClient } from "mqtt";
import type { Logger } from "../../shared/log.ts";
import { createDeviceToken } from "../../shared/wire/device-token.ts";
import { DEFAULT_TOPIC_PREFIX, deviceTopic, groupCommandTopic } from "../../shared/wire/topics.ts";
import type { AgentSettings } from "../config/settings.ts";
import type { DeviceIdentity } from "./identity.ts";

export interface MqttLinkOptions {
  settings: Pick<AgentSettings, "mqtt" | "mqttAuth" | "groups">;
  identity: DeviceIdentity;
  onCommand: (payload: Buffer) => void;
  onConnected: () => void;
  log: Logger;
}

export interface MqttLink {
  publishReport(payload: string): Promise<void>;
  connected(): boolean;
  /** Resolves true once connected (now or within `timeoutMs`), false otherwise. */
  waitConnected(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

const MIN_RECONNECT_MS = 1000;
const MAX_RECONNECT_MS = 300_000;

export function connectMqtt(options: MqttLinkOptions): MqttLink {
  const { identity, settings, log } = options;
  const id = identity.deviceId;
  const prefix = DEFAULT_TOPIC_PREFIX;
  const token = () => createDeviceToken(id, identity.key, new Date());
  const client: MqttClient = mqtt.connect(settings.mqtt, {
    clientId: id,
    ...(settings.mqttAuth === "token" ? { username: id, password: token() } : {}),
    protocolVersion: 4,
    clean: true,
    keepalive: 60,
    reconnectPeriod: MIN_RECONNECT_MS,
    connectTimeout: 30_000,
    will: { topic: deviceTopic(prefix, id, "online"), payload: Buffer.from("offline"), qos: 1, retain: true },
  });
  let connectedOnce = false;
  const waiters = new Set<() => void>();

  client.on("connect", () => {
    connectedOnce = true;
    client.options.reconnectPeriod = MIN_RECONNECT_MS;
    log.info({ event: "agent.mqtt.connected", broker: settings.mqtt.replace(/\/\/[^@/]*@/, "//") }, "connected to the broker");
    void (async () => {
      await client.subscribeAsync(deviceTopic(prefix, id, "cmd"), { qos: 1 });
      if (settings.mqttAuth === "hello") await client.publishAsync(deviceTopic(prefix, id, "hello"), token(), { qos: 1 });
      await client.publishAsync(deviceTopic(prefix, id, "online"), "online", { qos: 1, retain: true });
      for (const wake of waiters) wake();
      options.onConnected();
      await subscribeGroups(1);
    })().catch((error: Error) => log.warn({ event: "agent.mqtt.setup.failed", err: error }, `after connecting: ${error.message}`));
  });
  // The server learns a device's groups from its reports, so a first connection may be refused
  // its group topics until the first report is in: try again a few times.
  const subscribeGroups = async (attempt: number): Promise<void> => {
    if (settings.groups.length === 0 || !client.connected) return;
    try {
      await client.subscribeAsync(settings.groups.map((g) => groupCommandTopic(prefix, g)), { qos: 1 });
    } catch (error) {
      if (attempt >= 5) return log.warn({ event: "agent.mqtt.groups.refused", groups: settings.groups }, `the broker refused the group command topics: ${(error as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 2000 * attempt).unref());
      await subscribeGroups(attempt + 1);
    }
  };
  client.on("reconnect", () => {
    // A fresh token each time (they expire), and back off while the broker stays away.
    if (settings.mqttAuth === "token") client.options.password = token();
    client.options.reconnectPeriod = Math.min(MAX_RECONNECT_MS, (client.options.reconnectPeriod ?? MIN_RECONNECT_MS) * 2);
  });
  client.on("error", (error) => log.warn({ event: "agent.mqtt.error", err: error }, `broker: ${error.message}`));
  client.on("message", (_topic, payload) => options.onCommand(payload));

  return {
    publishReport: async (payload) => {
      if (!client.connected) throw new Error("not connected to the broker");
      await client.publishAsync(deviceTopic(prefix, id, "state"), payload, { qos: 1 });
    },
    connected: () => client.connected,
    waitConnected: (timeoutMs) =>
      connectedOnce
        ? Promise.resolve(true)
        : new Promise<boolean>((resolve) => {
            const done = (value: boolean) => {
              clearTimeout(timer);
              waiters.delete(wake);
              resolve(value);
            };
            const wake = () => done(true);
            const timer = setTimeout(() => done(false), timeoutMs);
            waiters.add(wake);
          }),
    close: async () => {
      await client.endAsync(true);
    },
  };
}
