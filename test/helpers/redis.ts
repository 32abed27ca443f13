/**
 * A private Redis for a test: Debian's `redis-server` (scripts/setup.sh installs it) on a loopback
 * port and data folder of the test's own, nothing saved to disk.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createConnection } from "node:net";
import { freePort } from "./mosquitto.ts";
import { makeTempDir, removeTree } from "./tmp.ts";
import { until } from "./wait.ts";

export interface RunningRedis {
  port: number;
  /** redis://127.0.0.1:port/0 */
  url: string;
  /** Kills it (its data is in memory only: gone) and, unless `keep`, removes its folder. */
  stop(options?: { keep?: boolean }): Promise<void>;
  /** Starts it again on the same port after stop({ keep: true }). */
  start(): Promise<void>;
}

export async function startRedis(name: string): Promise<RunningRedis> {
  const dir = await makeTempDir(`redis-${name}`);
  const port = await freePort();
  let child: ChildProcess;
  let failure = "";
  const running = () => child.exitCode === null && child.signalCode === null;
  const start = async () => {
    failure = "";
    child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--protected-mode", "yes"], { stdio: ["ignore", "ignore", "pipe"] });
    child.once("error", (error) => (failure = `${error.message} (run scripts/setup.sh, or apt-get install redis-server)`));
    child.stderr!.setEncoding("utf8").on("data", (text: string) => (failure += text));
    const answers = () =>
      new Promise<boolean>((resolve) => {
        const socket = createConnection({ port, host: "127.0.0.1" }, () => socket.write("PING\r\n"));
        socket.once("data", (data) => resolve(data.toString().startsWith("+PONG")));
        socket.once("error", () => resolve(false));
        socket.once("data", () => socket.destroy());
      });
    await until(async () => (!running() ? Promise.reject(new Error(`redis-server ended: ${failure}`)) : answers()), "redis-server to answer", 15_000, { detail: () => failure, rethrow: true });
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    start,
    stop: async (options = {}) => {
      if (running()) {
        const ended = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGKILL");
        await ended;
      }
      if (!options.keep) await removeTree(dir);
    },
  };
}
