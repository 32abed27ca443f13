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
  /** The broker's port; several: devices spread over them in turn (instances of one cluster). */
  port: number | number[];
  /** The fleet enrollment secret a server with --auto-accept wants proved in the token. */
  enrollmentSecret?: Uint8Array;
  /** A device whose connection drops connects to the next port (a load balancer's failover) and subscribes again. */
  failover?: boolean;
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
  /** Per device, the id of every command message received (repeats included). */
  commandIds: Map<string, string[]>;
  /** Connections made again after a drop (failover). */
  reconnects(): number;
  close(): Promise<void>;
}

export async function startFarm(options: FarmOptions, onProgress: (connected: number) => void): Promise<DeviceFarm> {
  const clients = new Map<string, MqttClient>();
  const firstCommandAt = new Map<string, bigint>();
  const commandIds = new Map<string, string[]>();
  const ports = Array.isArray(options.port) ? options.port : [options.port];
  const ids = Array.from({ length: options.count }, (_, i) => `${options.idPrefix}-${String(i).padStart(5, "0")}`);
  let next = 0;
  let closing = false;
  let reconnects = 0;
  const connectOne = async (id: string, key: ReturnType<typeof generateKeyPair>, portIndex: number, first: boolean): Promise<void> => {
    const token = createDeviceToken(id, key, new Date(), undefined, options.enrollmentSecret ?? null);
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${ports[portIndex % ports.length]}`, {
      clientId: id,
      ...(options.external ? {} : { username: id, password: token }),
      reconnectPeriod: 0,
      connectTimeout: 120_000,
      keepalive: 600,
      protocolVersion: 4,
      will: { topic: deviceTopic(DEFAULT_TOPIC_PREFIX, id, "online"), payload: Buffer.from("offline"), qos: 1, retain: options.external },
      // A connection the server closes before its CONNACK (a limit) fails at once instead of waiting for ever.
    }, false);
    clients.set(id, client);
    client.on("message", (_topic, payload) => {
      if (!firstCommandAt.has(id)) firstCommandAt.set(id, process.hrtime.bigint());
      const commandId = /"id":"([^"]+)"/.exec(payload.toString("utf8"))?.[1] ?? "?";
      commandIds.set(id, [...(commandIds.get(id) ?? []), commandId]);
    });
    if (options.failover) {
      client.once("close", () => {
        if (closing) return;
        reconnects++;
        const retry = (attempt: number): void => {
          setTimeout(() => void connectOne(id, key, portIndex + attempt, false).catch(() => retry(attempt + 1)), 200);
        };
        retry(1);
      });
    }
    await client.subscribeAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, id, "cmd"), { qos: 1 });
    if (!first) return;
    if (options.external) {
      await client.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, id, "hello"), token, { qos: 1 });
      await client.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, id, "online"), "online", { qos: 1, retain: true });
    }
    const report = signReport({ deviceId: id, counter: 1, sent: new Date().toISOString(), groups: [options.group], architecture: "amd64", booted: { commit: "0".repeat(64), version: "0" }, state: "idle" }, key);
    await client.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, id, "state"), report, { qos: 1 });
  };
  const worker = async () => {
    while (next < ids.length) {
      const index = next++;
      await connectOne(ids[index]!, generateKeyPair(), index, true);
      if (clients.size % 500 === 0) onProgress(clients.size);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  onProgress(clients.size);
  return {
    ids,
    firstCommandAt,
    commandIds,
    reconnects: () => reconnects,
    close: async () => {
      closing = true;
      await Promise.all([...clients.values()].map((client) => client.endAsync(true)));
    },
  };
}
