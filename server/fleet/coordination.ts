/**
 * Who drives rollouts when several `serve` instances share one store, and the lock their rollout
 * steps take. One instance holds the lease and ticks; any instance may create, pause, resume or
 * abort a rollout and record the reports it receives, but every step that reads a rollout's
 * state and then publishes (a command, a withdrawal) runs under one store-wide lock, so no
 * command goes out after the withdrawal that should have stopped it, whichever instance sent each.
 */
import pg from "pg";
import type { Logger } from "../../shared/log.ts";
import { connectionConfig, createPool, withClient } from "./pg-connect.ts";

export interface RolloutCoordination {
  /** Whether this instance holds the lease now; takes it when it is free. */
  isLeader(): Promise<boolean>;
  /** Counts the times this instance took the lease: a change means it lost it meanwhile and must take over again. */
  readonly epoch: number;
  /** Runs `work` holding the store-wide rollout lock. */
  withRolloutLock<T>(work: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** One process with its own store (SQLite): always the leader; its engine already runs one step at a time. */
export const SOLE_INSTANCE: RolloutCoordination = {
  isLeader: async () => true,
  epoch: 1,
  withRolloutLock: (work) => work(),
  close: async () => undefined,
};

/** Advisory-lock keys (any two 64-bit numbers the store's tables never use): "apt-ostree lease", "apt-ostree steps". */
const LEASE_KEY = 0x6170746f_6c656173n;
const STEP_KEY = 0x6170746f_73746570n;

/**
 * The lease is a PostgreSQL session advisory lock held on a connection of its own: the server
 * frees it the moment that connection ends (a crash, kill -9, a lost network), and another
 * instance's next try takes it. The step lock is a transaction advisory lock, freed at commit.
 */
export class PostgresCoordination implements RolloutCoordination {
  private lease: pg.Client | null = null;
  private leading = false;
  private closed = false;
  private taken = 0;
  private readonly locks: pg.Pool;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
  ) {
    this.locks = createPool(url, 2);
  }

  get epoch(): number {
    return this.taken;
  }

  async isLeader(): Promise<boolean> {
    if (this.closed) return false;
    try {
      if (this.leading) {
        // Still holding it: the connection answers (a dead one is noticed here, or by keepalives).
        await this.lease!.query("SELECT 1");
        return true;
      }
      if (!this.lease) {
        // A query that hangs on a dead socket must not stall the ticks: 10 s at most.
        const client = new pg.Client({ ...connectionConfig(this.url), query_timeout: 10_000 });
        client.on("error", (error) => this.lost(client, error));
        client.on("end", () => this.lost(client, null));
        await client.connect();
        if (this.closed) {
          await client.end().catch(() => undefined);
          return false;
        }
        this.lease = client;
      }
      const { rows } = await this.lease.query<{ taken: boolean }>("SELECT pg_try_advisory_lock($1) AS taken", [LEASE_KEY.toString()]);
      // Closed while the query ran: close() ended the connection, and the lease with it.
      if (this.closed) return false;
      if (rows[0]?.taken) {
        this.leading = true;
        this.taken++;
        this.log.info({ event: "rollout.lease.taken", epoch: this.taken }, "this instance now drives the rollouts");
      }
    } catch (error) {
      if (this.leading) this.log.warn({ event: "rollout.lease.lost", err: error }, `lost the rollout lease: ${(error as Error).message}`);
      else this.log.warn({ event: "rollout.lease.error", err: error }, `cannot try the rollout lease: ${(error as Error).message}`);
      await this.dropLease();
    }
    return this.leading;
  }

  /** Waits at most a minute for the lock (a step stuck on a dead broker elsewhere must not hold every pause for ever). */
  withRolloutLock<T>(work: () => Promise<T>): Promise<T> {
    return withClient(this.locks, async (client) => {
      await client.query("BEGIN");
      try {
        await client.query("SET LOCAL lock_timeout = '60s'");
        await client.query("SELECT pg_advisory_xact_lock($1)", [STEP_KEY.toString()]);
        return await work();
      } finally {
        await client.query("COMMIT").catch(() => undefined);
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.leading = false;
    await this.dropLease();
    await this.locks.end().catch(() => undefined);
  }

  private lost(client: pg.Client, error: Error | null): void {
    if (client !== this.lease) return;
    if (this.leading) this.log.warn({ event: "rollout.lease.lost", err: error ?? undefined }, `lost the rollout lease: ${error?.message ?? "its connection ended"}`);
    this.leading = false;
    this.lease = null;
  }

  private async dropLease(): Promise<void> {
    const client = this.lease;
    this.lease = null;
    this.leading = false;
    await client?.end().catch(() => undefined);
  }
}
