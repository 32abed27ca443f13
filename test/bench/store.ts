/**
 * The store under an enrollment storm, without the network: N devices at once, each enrolling,
 * accepted, coming online and sending its first report (4 durable writes), as the broker's
 * ingest drives them. SQLite with one transaction per write (the floor the server had), SQLite
 * with group commit (the default), and PostgreSQL (a private server, fsync on).
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { FleetStore } from "../../server/fleet/store.ts";
import { SqliteFleetStore } from "../../server/fleet/store-sqlite.ts";
import { PostgresFleetStore } from "../../server/fleet/store-postgres.ts";
import { defaultCacheDir } from "../../server/compose/cache.ts";
import { startPostgres } from "../helpers/postgres.ts";
import { removeTree } from "../helpers/tmp.ts";

async function storm(store: FleetStore, devices: number): Promise<number> {
  const t0 = new Date();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: devices }, async (_, i) => {
      const id = `storm-${i}`;
      await store.enrollPending(id, `KEY-${i}`, t0);
      await store.acceptDevice(id, t0);
      await store.setOnline(id, true, t0);
      await store.recordReport({ deviceId: id, counter: 1, sent: t0.toISOString(), state: "idle" }, t0);
    }),
  );
  return (performance.now() - started) / 1000;
}

export async function benchStore(say: (line?: string) => void, progress: (line: string) => void): Promise<void> {
  const devices = Number(process.env.APT_OSTREE_BENCH_DEVICES?.split(",").at(-1) ?? 10000);
  // On the cache's disk (not /tmp, which may be a tmpfs): fsync is what is measured.
  const onDisk = join(defaultCacheDir(), `bench-store-${process.pid}`);
  const rows: string[] = [];
  try {
    await mkdir(onDisk, { recursive: true });
    for (const [name, open] of [
      ["SQLite, one transaction per write", () => new SqliteFleetStore(join(onDisk, "one.db"), { groupCommit: false })],
      ["SQLite, group commit (default)", () => new SqliteFleetStore(join(onDisk, "group.db"))],
    ] as const) {
      progress(`store: ${name}, ${devices} devices`);
      const store = open();
      const seconds = await storm(store, devices);
      await store.close();
      rows.push(`| ${name} | ${devices} | ${seconds.toFixed(2)} s | ${Math.round((devices * 4) / seconds)} |`);
    }
    progress(`store: PostgreSQL, ${devices} devices`);
    const postgres = await startPostgres("bench-store");
    try {
      const store = await PostgresFleetStore.open(await postgres.createDatabase("storm"));
      const seconds = await storm(store, devices);
      await store.close();
      rows.push(`| PostgreSQL (pool of 10, a transaction per write) | ${devices} | ${seconds.toFixed(2)} s | ${Math.round((devices * 4) / seconds)} |`);
    } finally {
      await postgres.remove();
    }
  } finally {
    await removeTree(onDisk);
  }
  say("### Store: an enrollment storm (enroll, accept, online, first report per device, all at once)");
  say();
  say("| store | devices | time | writes/s |");
  say("| --- | --- | --- | --- |");
  for (const row of rows) say(row);
  say();
}
