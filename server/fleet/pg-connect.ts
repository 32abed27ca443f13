/**
 * How the server connects to PostgreSQL: pools and clients that notice a dead peer within
 * seconds (TCP keepalives on both ends) and never end the process when a connection breaks.
 */
import pg from "pg";

const INT8_OID = 20;

/** BIGINT (counters, event ids, COUNT(*)) as a number: every value the store keeps is far below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") => (oid === INT8_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as "text"))) as typeof pg.types.getTypeParser,
};

/**
 * Connection settings: 10 s to connect; keepalives from the client after 10 s idle, and the
 * server told to probe a silent client every 5 s after 10 s (a crashed host's session, and the
 * rollout lease it holds, ends within about 25 s instead of the system's two hours).
 */
export function connectionConfig(url: string): pg.ClientConfig {
  return {
    connectionString: url,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    options: "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3",
    types,
  };
}

export function createPool(url: string, max: number): pg.Pool {
  const pool = new pg.Pool({ ...connectionConfig(url), max });
  // An idle connection the server dropped (a restart, a failover) is replaced; it must not end the process.
  pool.on("error", () => undefined);
  return pool;
}

/**
 * Runs `work` on a connection of the pool. While borrowed, a client has no error listener of the
 * pool's: one of ours catches a connection that breaks meanwhile (which would otherwise end the
 * process), and the broken connection is thrown away instead of going back to the pool.
 */
export async function withClient<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (error: Error) => {
    broken = error;
  };
  client.on("error", onError);
  try {
    return await work(client);
  } finally {
    client.off("error", onError);
    client.release(broken);
  }
}
