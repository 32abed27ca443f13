/**
 * What joins the embedded brokers of several server instances into one (issue 21): aedes's
 * message bus over Redis pub/sub (mqemitter-redis), so a command published on one instance
 * reaches a device connected to another, and its persistence in Redis (aedes-persistence-redis),
 * so retained commands, subscriptions and last wills outlive any one instance.
 */
import { Redis } from "ioredis";
import mqemitterRedisModule from "mqemitter-redis";
import type { Logger } from "../../shared/log.ts";

// aedes-persistence-redis ships no types; aedes only needs the object.
// @ts-expect-error no declaration file
import aedesPersistenceRedis from "aedes-persistence-redis";

/** The part of an mqemitter the server uses itself. */
export interface MessageBus {
  on(topic: string, listener: (packet: { topic: string; payload: unknown }, done: () => void) => void): unknown;
  emit(packet: { topic: string; payload: unknown }, callback?: (error?: Error) => void): void;
}

const mqemitterRedis = mqemitterRedisModule as unknown as (options: object) => MessageBus & { state: NodeJS.EventEmitter };

/** aedes's `mq` and `persistence` options (the persistence opaque here). */
export interface BrokerBackbone {
  mq: MessageBus;
  persistence: unknown;
  /** How often each broker says it is alive; a broker silent for three of these is dead and its clients' last wills are published. */
  heartbeatIntervalMs: number;
  /** Whether any of these brokers holds a last will for the client (a connection there, in aedes-persistence-redis's keys). */
  hasWill(brokerIds: string[], clientId: string): Promise<boolean>;
  close(): Promise<void>;
}

export class RedisUnreachableError extends Error {
  readonly code = "E_REDIS_UNREACHABLE";
  constructor(url: string, reason: string) {
    super(`cannot reach Redis at ${redactRedisUrl(url)}: ${reason}; start it, or drop --broker-redis to run one instance with its own broker`);
  }
}

export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, "//***@");
}

/** Dead broker's wills within ~4 heartbeats: 20 s here instead of aedes's default of 4 minutes. */
const HEARTBEAT_MS = 5000;

/**
 * Connects to Redis (`redis://[:password@]host:port[/db]`, one database per fleet: channels and
 * keys are not prefixed). Fails within `timeoutMs` when Redis does not answer. Commands made while
 * Redis is away wait at most a few retries, then fail (the caller retries), so an outage cannot
 * fill the process's memory with a queue.
 */
export async function connectRedisBackbone(url: string, log: Logger, timeoutMs = 10_000): Promise<BrokerBackbone> {
  const options = { maxRetriesPerRequest: 3, connectTimeout: timeoutMs, retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000) };
  const db = new Redis(url, { ...options, lazyConnect: true });
  let lastError = "";
  db.on("error", (error: Error) => {
    if (error.message !== lastError) log.warn({ event: "mqtt.redis.error", reason: error.message }, `Redis: ${error.message}`);
    lastError = error.message;
  });
  db.on("ready", () => {
    if (lastError) log.info({ event: "mqtt.redis.ready" }, "Redis is back");
    lastError = "";
  });
  try {
    await withTimeout(db.connect(), timeoutMs, "no answer");
    await db.ping();
  } catch (error) {
    db.disconnect();
    throw new RedisUnreachableError(url, error instanceof Error ? error.message : String(error));
  }
  const mq = mqemitterRedis({ connectionString: url, ...options });
  // Its connections' errors (logged above through the persistence's) must not end the process.
  mq.state.on("error", () => undefined);
  guardHashReads(db);
  const persistence = aedesPersistenceRedis({ conn: db });
  return {
    mq,
    persistence,
    heartbeatIntervalMs: HEARTBEAT_MS,
    hasWill: async (brokerIds, clientId) => brokerIds.length > 0 && (await db.exists(...brokerIds.map((id) => `will:${id}:${encodeURIComponent(clientId)}`))) > 0,
    close: async () => {
      // aedes closes the bus when it closes; the persistence's connection is ours.
      (persistence as { destroy(cb?: () => void): void }).destroy();
      db.disconnect();
    },
  };
}

/**
 * aedes-persistence-redis 10 reads a client's subscriptions without looking at the error first:
 * with Redis away, the undefined result throws inside ioredis's callback and ends the process.
 * Its hash reads here answer an empty hash beside the error, which the persistence passes on.
 */
function guardHashReads(db: Redis): void {
  const read = db.hgetallBuffer.bind(db) as (key: string) => Promise<Record<string, Buffer>>;
  (db as unknown as { hgetallBuffer: unknown }).hgetallBuffer = (key: string, callback?: (error: Error | null, hash: Record<string, Buffer>) => void) => {
    if (!callback) return read(key);
    read(key).then((hash) => callback(null, hash), (error: Error) => callback(error, {}));
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, reason: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(reason)), ms);
    }),
  ]);
}
