/**
 * The agent's MQTT connection: authenticates with a fresh signed token on every (re)connect
 * (as the password on the embedded broker, or published as a hello through an external one), or
 * with the broker client certificate the server issued for its key (`certificate`: an external
 * broker that enforces identities, docs/mosquitto/; broker-certificate.ts),
 * keeps an online flag with a last will, subscribes to its own and its groups' command topics,
 * and reconnects with backoff (doubling from 1 s up to 5 minutes).
 */
import type { Logger } from "../../shared/log.ts";
import { createDeviceToken } from "../../shared/wire/device-token.ts";
import { DEFAULT_TOPIC_PREFIX, deviceTopic, groupCommandTopic } from "../../shared/wire/topics.ts";
import type { AgentSettings } from "../config/settings.ts";
import { MqttClient } from "../mqtt/client.ts";
import type { DeviceIdentity } from "./identity.ts";
import { AgentConfigError } from "../config/settings.ts";
import { brokerCredentials } from "./broker-certificate.ts";
import { ServerClock } from "./server-clock.ts";

export interface MqttLinkOptions {
  settings: Pick<AgentSettings, "mqtt" | "mqttAuth" | "groups" | "caFile" | "server" | "stateDir">;
  identity: DeviceIdentity;
  /** The fleet enrollment secret: each token then proves it (for a server's --auto-accept); null for none. */
  enrollmentSecret: Uint8Array | null;
  onCommand: (payload: Buffer) => void;
  onConnected: () => void;
  /** The server's time, which tokens are stamped with; measured again when the broker refuses one (default: one of its own). */
  serverClock?: ServerClock;
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
  const serverClock = options.serverClock ?? new ServerClock({ server: settings.server, log });
  const token = () => createDeviceToken(id, identity.key, serverClock.now(), undefined, options.enrollmentSecret);
  let connectedOnce = false;
  const waiters = new Set<() => void>();
  if (settings.mqttAuth === "certificate" && !settings.mqtt.startsWith("mqtts://")) {
    throw new AgentConfigError(`mqttAuth 'certificate' needs an mqtts:// broker, not ${settings.mqtt}: a client certificate is presented in the TLS handshake`);
  }
  const tlsCredentials = settings.mqttAuth === "certificate"
    ? () => brokerCredentials({ server: settings.server, caFile: settings.caFile, stateDir: settings.stateDir, identity, enrollmentSecret: options.enrollmentSecret, now: () => serverClock.now(), log })
    : undefined;

  const client: MqttClient = new MqttClient({
    url: settings.mqtt,
    caFile: settings.caFile,
    ...(tlsCredentials ? { tlsCredentials } : {}),
    connectPacket: () => ({
      clientId: id,
      keepaliveSeconds: 60,
      clean: true,
      ...(settings.mqttAuth === "token" ? { username: id, password: token() } : {}),
      will: { topic: deviceTopic(prefix, id, "online"), payload: Buffer.from("offline"), qos: 1, retain: true },
    }),
    connectTimeoutMs: 30_000,
    minReconnectMs: MIN_RECONNECT_MS,
    maxReconnectMs: MAX_RECONNECT_MS,
    onConnect: () => {
      connectedOnce = true;
      log.info({ event: "agent.mqtt.connected", broker: settings.mqtt.replace(/\/\/[^@/]*@/, "//") }, "connected to the broker");
      void (async () => {
        await client.subscribe([deviceTopic(prefix, id, "cmd")], 1);
        if (settings.mqttAuth === "hello") await client.publish(deviceTopic(prefix, id, "hello"), token(), { qos: 1 });
        await client.publish(deviceTopic(prefix, id, "online"), "online", { qos: 1, retain: true });
        for (const wake of waiters) wake();
        options.onConnected();
        await subscribeGroups(1);
      })().catch((error: Error) => log.warn({ event: "agent.mqtt.setup.failed", err: error }, `after connecting: ${error.message}`));
    },
    onMessage: (_topic, payload) => options.onCommand(payload),
    onError: (error) => {
      log.warn({ event: "agent.mqtt.error", err: error }, `broker: ${error.message}`);
      // A refused token may be this device's clock, not its key: read the server's time before the next try.
      if (settings.mqttAuth === "token" && /refused the connection/.test(error.message)) void serverClock.measure();
    },
  });

  // The server opens group topics for the groups its operator assigned, which may come after the
  // device connects (or never: the config's groups are only reported): try again a few times.
  const subscribeGroups = async (attempt: number): Promise<void> => {
    if (settings.groups.length === 0 || !client.connected) return;
    try {
      await client.subscribe(settings.groups.map((g) => groupCommandTopic(prefix, g)), 1);
    } catch (error) {
      if (attempt >= 5) return log.warn({ event: "agent.mqtt.groups.refused", groups: settings.groups }, `the broker refused the group command topics: ${(error as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 2000 * attempt).unref());
      await subscribeGroups(attempt + 1);
    }
  };

  return {
    publishReport: (payload) => client.publish(deviceTopic(prefix, id, "state"), payload, { qos: 1 }),
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
    close: () => client.end(),
  };
}
