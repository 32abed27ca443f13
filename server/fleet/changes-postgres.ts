/**
 * Fleet changes for instances that share a PostgreSQL database: each change is a NOTIFY on one
 * channel, and every instance LISTENs on it, so a dashboard open on one instance sees the reports,
 * enrollments and rollout steps that another instance stored. Its own changes come back the same
 * way (one path, one order). A dropped LISTEN connection is made again after a second.
 */
import pg from "pg";
import type { Logger } from "../../shared/log.ts";
import { FleetChanges, type FleetChange } from "./changes.ts";
import { connectionConfig, createPool } from "./pg-connect.ts";

const CHANNEL = "apt_ostree_fleet";
const RECONNECT_MS = 1000;

export class PostgresFleetChanges extends FleetChanges {
  private listener: pg.Client | null = null;
  private closed = false;
  private readonly pool: pg.Pool;

  private constructor(
    private readonly url: string,
    private readonly log: Logger,
  ) {
    super();
    this.pool = createPool(url, 2);
  }

  static async open(url: string, log: Logger): Promise<PostgresFleetChanges> {
    const changes = new PostgresFleetChanges(url, log);
    await changes.listen();
    return changes;
  }

  override notify(change: FleetChange): void {
    this.pool.query("SELECT pg_notify($1, $2)", [CHANNEL, JSON.stringify(change)]).catch((error: Error) => {
      this.log.warn({ event: "fleet.changes.notify-failed", err: error }, `cannot tell the other instances of a change: ${error.message}`);
    });
  }

  override async close(): Promise<void> {
    this.closed = true;
    const client = this.listener;
    this.listener = null;
    await client?.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  /** One LISTEN connection; when it ends, relisten() makes another. Throws when it cannot connect. */
  private async listen(): Promise<void> {
    const client = new pg.Client(connectionConfig(this.url));
    const lost = (error: Error | null) => {
      if (this.listener !== client || this.closed) return;
      this.listener = null;
      this.log.warn({ event: "fleet.changes.listen-lost", err: error ?? undefined }, `lost the fleet change stream (${error?.message ?? "connection ended"}); listening again in ${RECONNECT_MS / 1000} s`);
      void client.end().catch(() => undefined);
      this.relisten();
    };
    client.on("error", lost);
    client.on("end", () => lost(null));
    client.on("notification", (message) => {
      const change = parseChange(message.payload);
      if (change) this.deliver(change);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.closed) return void (await client.end().catch(() => undefined));
    this.listener = client;
  }

  private relisten(): void {
    setTimeout(() => {
      if (this.closed) return;
      this.listen().catch(() => this.relisten());
    }, RECONNECT_MS).unref();
  }
}

/** What another instance said changed: a device or a rollout, by id; anything else is ignored. */
export function parseChange(payload: string | undefined): FleetChange | null {
  if (!payload || payload.length > 1024) return null;
  try {
    const value = JSON.parse(payload) as { kind?: unknown; id?: unknown };
    if ((value.kind === "device" || value.kind === "rollout") && typeof value.id === "string" && value.id.length > 0 && value.id.length <= 256) return { kind: value.kind, id: value.id };
  } catch {
    // not JSON: ignored
  }
  return null;
}
