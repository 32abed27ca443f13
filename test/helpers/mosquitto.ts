/**
 * A real mosquitto on a free loopback port, configured as docs/mosquitto/ describes: the ACL
 * from docs/mosquitto/apt-ostree.acl and a password for the server's account.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { createConnection, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { until } from "./wait.ts";

const ACL = fileURLToPath(new URL("../../docs/mosquitto/apt-ostree.acl", import.meta.url));
export const MOSQUITTO_SERVER_USER = "apt-ostree-server";
const SERVER_PASSWORD = "server-secret";
/** As docs/mosquitto/mosquitto.conf: the server's one subscription carries every device's reports. */
const QUEUE_SETTINGS = ["max_queued_messages 1000000", "max_inflight_messages 1000"];

export interface RunningMosquitto {
  port: number;
  pid: number;
  /** The URL `serve --mqtt-url` takes, with the server's credentials. */
  serverUrl: string;
  stop(): void;
}

export async function freePort(): Promise<number> {
  return new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** Starts mosquitto with its files in `dir` (which must exist). */
export async function startMosquitto(dir: string, extraConfig: string[] = []): Promise<RunningMosquitto> {
  const port = await freePort();
  await execa("mosquitto_passwd", ["-b", "-c", join(dir, "passwd"), MOSQUITTO_SERVER_USER, SERVER_PASSWORD]);
  await writeFile(join(dir, "acl"), await readFile(ACL, "utf8"));
  await writeFile(
    join(dir, "mosquitto.conf"),
    ["per_listener_settings false", `listener ${port} 127.0.0.1`, "allow_anonymous true", `password_file ${join(dir, "passwd")}`, `acl_file ${join(dir, "acl")}`, "persistence false", ...QUEUE_SETTINGS, ...extraConfig, ""].join("\n"),
  );
  // Started as root, mosquitto drops to its own user before reading the password and ACL files.
  await execa("chmod", ["0755", dir]);
  await execa("chmod", ["0644", join(dir, "passwd"), join(dir, "acl")]);
  const child: ChildProcess = spawn("mosquitto", ["-c", join(dir, "mosquitto.conf")], { stdio: "ignore" });
  await until(
    () => new Promise<boolean>((resolve) => createConnection(port, "127.0.0.1").once("connect", function (this: Socket) { this.destroy(); resolve(true); }).once("error", () => resolve(false))),
    "mosquitto to listen",
  );
  return { port, pid: child.pid!, serverUrl: `mqtt://${MOSQUITTO_SERVER_USER}:${SERVER_PASSWORD}@127.0.0.1:${port}`, stop: () => void child.kill("SIGTERM") };
}
