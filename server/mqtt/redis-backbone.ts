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
  /** Notes that the client connected to this broker (its last connection wins). */
  markPresent(clientId: string, brokerId: string): void;
  /** The broker the client last connected to, null when none is known (or Redis is away: throws). */
  presentOn(clientId: string): Promise<string | null>;
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
 * Connects to Redis (`redis://[:password@]host:port[/db]`). One Redis per fleet: pub/sub
 * channels ignore the database number, so two fleets on one Redis would hear each other's
 * broker traffic. Fails within `timeoutMs` when Redis does not answer. Commands made while Redis
 * is away wait at most a few retries, then fail (aedes and the caller retry or drop), so an outage
 * cannot fill the process's memory with a queue, nor end it.
 */
export async function connectRedisBackbone(url: string, log: Logger, timeoutMs = 10_000): Promise<BrokerBackbone> {
  const options = { maxRetriesPerRequest: 3, connectTimeout: timeoutMs, retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000) };
  const connect = (role: string, extra: object = {}): Redis => {
    const connection = new Redis(url, { ...options, ...extra, lazyConnect: true });
    let lastError = "";
    connection.on("error", (error: Error) => {
      if (error.message !== lastError) log.warn({ event: "mqtt.redis.error", connection: role, reason: error.message }, `Redis (${role}): ${error.message}`);
      lastError = error.message;
    });
    connection.on("ready", () => {
      if (lastError) log.info({ event: "mqtt.redis.ready", connection: role }, `Redis (${role}) is back`);
      lastError = "";
    });
    handleEveryReply(connection);
    return connection;
  };
  const db = connect("persistence");
  const pubConn = connect("publish", { enableAutoPipelining: true });
  const subConn = connect("subscribe");
  try {
    await withTimeout(Promise.all([db.connect(), pubConn.connect(), subConn.connect()]), timeoutMs, "no answer");
    await db.ping();
  } catch (error) {
    for (const connection of [db, pubConn, subConn]) connection.disconnect();
    throw new RedisUnreachableError(url, error instanceof Error ? error.message : String(error));
  }
  const mq = mqemitterRedis({ pubConn, subConn });
  // Its connections' errors are logged above; an 'error' event without a listener would end the process.
  mq.state.on("error", () => undefined);
  guardHashReads(db);
  const persistence = aedesPersistenceRedis({ conn: db });
  const presenceKey = (clientId: string) => `aptostree:presence:${clientId}`;
  return {
    mq,
    persistence,
    heartbeatIntervalMs: HEARTBEAT_MS,
    markPresent: (clientId, brokerId) => void db.set(presenceKey(clientId), brokerId).catch(() => undefined),
    presentOn: async (clientId) => db.get(presenceKey(clientId)),
    close: async () => {
      // aedes closes the bus (and its two connections) when it closes; the persistence's connection is ours.
      (persistence as { destroy(cb?: () => void): void }).destroy();
      db.disconnect();
    },
  };
}

/**
 * aedes-persistence-redis and mqemitter-redis send some commands without a callback (a will's
 * list entry, QUIT): with Redis away their promises reject with nobody listening, which ends the
 * process. Every command's reply is listened to here; callers that wait for it still get it.
 */
function handleEveryReply(connection: Redis): void {
  const send = connection.sendCommand.bind(connection);
  connection.sendCommand = ((command: { promise: Promise<unknown> }, stream?: unknown) => {
    command.promise.catch(() => undefined);
    return send(command as never, stream as never);
  }) as typeof connection.sendCommand;
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
