/**
 * Many protocol-following devices in one process, for the fleet benchmark: each connects with
 * its own ed25519 identity (signed token as password on the embedded broker, or a signed hello
 * through an external one), subscribes to its command topic, sends one signed idle report, and
 * records when its first command arrives. Lighter than test/helpers/simulated-device.ts: it does
 * not verify or act on commands, so the farm's CPU goes to holding connections.
 */
import mqtt, { type MqttClient } from "mqtt";
import { generateKeyPair } from "../../shared/sign/ed25519.ts";
import { createDeviceToken } from "../../shared/wire/device-token.ts";
import { signReport } from "../../shared/wire/report.ts";
import { DEFAULT_TOPIC_PREFIX, deviceTopic } from "../../shared/wire/topics.ts";

export interface FarmOptions {
  count: number;
  port: number;
  /** Through an external broker: enroll by hello and publish the online flag ourselves. */
  external: boolean;
  group: string;
  /** Connections opened at once. */
  concurrency: number;
  idPrefix: string;
}

export interface DeviceFarm {
  ids: string[];
  /** hrtime (ns) at which each device got its first command, by id. */
  firstCommandAt: Map<string, bigint>;
  close(): Promise<void>;
}

export async function startFarm(options: FarmOptions, onProgress: (connected: number) => void): Promise<DeviceFarm> {
  const clients: MqttClient[] = [];
  const firstCommandAt = new Map<string, bigint>();
  const ids = Array.from({ length: options.count }, (_, i) => `${options.idPrefix}-${String(i).padStart(5, "0")}`);
  let next = 0;
  const connectOne = async (id: string): Promise<void> => {
    const key = generateKeyPair();
    const token = createDeviceToken(id, key, new Date());
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${options.port}`, {
      clientId: id,
      ...(options.external ? {} : { username: id, password: token }),
      reconnectPeriod: 0,
      connectTimeout: 120_000,
      keepalive: 600,
      protocolVersion: 4,
      will: { topic: deviceTopic(DEFAULT_TOPIC_PREFIX, id, "online"), payload: Buffer.from("offline"), qos: 1, retain: options.external },
    });
    client.on("message", () => {
      if (!firstCommandAt.has(id)) firstCommandAt.set(id, process.hrtime.bigint());
    });
    await client.subscribeAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, id, "cmd"), { qos: 1 });
    if (options.external) {
      await client.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, id, "hello"), token, { qos: 1 });
      await client.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, id, "online"), "online", { qos: 1, retain: true });
    }
    const report = signReport({ deviceId: id, counter: 1, sent: new Date().toISOString(), groups: [options.group], architecture: "amd64", booted: { commit: "0".repeat(64), version: "0" }, state: "idle" }, key);
    await client.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, id, "state"), report, { qos: 1 });
    clients.push(client);
  };
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++]!;
      await connectOne(id);
      if (clients.length % 500 === 0) onProgress(clients.length);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  onProgress(clients.length);
  return {
    ids,
    firstCommandAt,
    close: async () => {
      await Promise.all(clients.map((client) => client.endAsync(true)));
    },
  };
}
