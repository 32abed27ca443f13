/**
 * A private PostgreSQL server for a test: Debian's `postgresql` binaries (scripts/setup.sh
 * installs them), a data folder and a port of the test's own, trust authentication on loopback
 * only. Run as the `postgres` user when the test runs as root (PostgreSQL refuses root).
 */
import { chown, mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import pg from "pg";
import { freePort } from "./mosquitto.ts";
import { makeTempDir, removeTree } from "./tmp.ts";

export interface RunningPostgres {
  port: number;
  /** A URL for `database` on this server (created by createDatabase). */
  url(database: string): string;
  /** Creates an empty database; returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server at once (SIGKILL when `crash`), keeping its data folder for start(). */
  stop(options?: { crash?: boolean }): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it and removes its files. */
  remove(): Promise<void>;
}

/** The newest installed server's bin folder, e.g. /usr/lib/postgresql/15/bin. */
async function binDir(): Promise<string> {
  const versions = await readdir("/usr/lib/postgresql").catch(() => [] as string[]);
  const newest = versions.filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))[0];
  if (!newest) throw new Error("PostgreSQL is not installed (/usr/lib/postgresql/N/bin): run scripts/setup.sh, or apt-get install postgresql");
  return join("/usr/lib/postgresql", newest, "bin");
}

export async function startPostgres(name: string): Promise<RunningPostgres> {
  const bin = await binDir();
  const dir = await makeTempDir(`pg-${name}`);
  const data = join(dir, "data");
  const sockets = join(dir, "sockets");
  await mkdir(data);
  await mkdir(sockets);
  // As root, the programs run as the postgres user itself (no runuser in between, so a kill reaches the server).
  const user = process.getuid?.() === 0 ? { uid: Number((await execa("id", ["-u", "postgres"])).stdout), gid: Number((await execa("id", ["-g", "postgres"])).stdout) } : {};
  if (user.uid !== undefined) for (const path of [dir, data, sockets]) await chown(path, user.uid, user.gid!);
  const as = (program: string, args: string[]) => execa(join(bin, program), args, { ...user, cwd: dir });
  await as("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
  const port = await freePort();
  let server: ResultPromise | null = null;
  const start = async () => {
    // fsync stays on: the store's durability is what is under test.
    server = as("postgres", ["-D", data, "-p", String(port), "-k", sockets, "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]) as unknown as ResultPromise;
    server.catch(() => undefined);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
      try {
        await client.connect();
        await client.end();
        return;
      } catch (error) {
        await client.end().catch(() => undefined);
        if (Date.now() > deadline) throw new Error(`PostgreSQL did not start on port ${port}: ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  };
  const stop = async (options: { crash?: boolean } = {}) => {
    const running = server;
    server = null;
    if (!running) return;
    running.kill(options.crash ? "SIGKILL" : "SIGINT");
    await running.catch(() => undefined);
  };
  await start();
  const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    port,
    url,
    async createDatabase(database: string) {
      const client = new pg.Client({ connectionString: url("postgres") });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${database.replace(/"/g, "")}"`);
      } finally {
        await client.end();
      }
      return url(database);
    },
    stop,
    start,
    async remove() {
      await stop();
      await removeTree(dir);
    },
  };
}
