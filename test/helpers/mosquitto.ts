/**
 * A real mosquitto on a free loopback port. `startMosquittoTls`: the configuration shipped in
 * docs/mosquitto/ (TLS, client certificates, the %u ACL), its paths and port templated.
 * With `dynsec`: docs/mosquitto/mosquitto-dynsec.conf instead, its dynamic-security.json made by
 * `mosquitto_ctrl dynsec init` as the README says.
 * `startMosquitto`: a plain test broker for devices that enroll by hello (anonymous devices, a
 * %c ACL, a password for the server's account), not a configuration to deploy.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { createConnection, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { until } from "./wait.ts";

const SHIPPED = (name: string) => fileURLToPath(new URL(`../../docs/mosquitto/${name}`, import.meta.url));
/** The plain test broker's ACL: a client writes under its own client id, which it chooses freely. */
const PLAIN_ACL = [
  "pattern write apt-ostree/devices/%c/state",
  "pattern write apt-ostree/devices/%c/online",
  "pattern write apt-ostree/devices/%c/hello",
  "pattern read apt-ostree/devices/%c/cmd",
  "user apt-ostree-server",
  "topic readwrite apt-ostree/#",
  "",
].join("\n");
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
  await writeFile(join(dir, "acl"), PLAIN_ACL);
  await writeFile(
    join(dir, "mosquitto.conf"),
    ["per_listener_settings false", `listener ${port} 127.0.0.1`, "allow_anonymous true", `password_file ${join(dir, "passwd")}`, `acl_file ${join(dir, "acl")}`, "persistence false", ...QUEUE_SETTINGS, ...extraConfig, ""].join("\n"),
  );
  // Started as root, mosquitto drops to its own user before reading the password and ACL files.
  await execa("chmod", ["0755", dir]);
  await execa("chmod", ["0644", join(dir, "passwd"), join(dir, "acl")]);
  const child = await runMosquitto(join(dir, "mosquitto.conf"), port);
  return { port, pid: child.pid!, serverUrl: `mqtt://${MOSQUITTO_SERVER_USER}:${SERVER_PASSWORD}@127.0.0.1:${port}`, stop: () => void child.kill("SIGTERM") };
}

/**
 * mosquitto with docs/mosquitto/mosquitto.conf and apt-ostree.acl as shipped, on a free port of
 * 127.0.0.1, with the CA and the server certificate of `tlsDir` (tls init) in `dir`, and its log
 * in `dir`/mosquitto.log. `serverUrl` is what `serve --mqtt-url` takes (the server presents a
 * certificate of its own).
 */
export async function startMosquittoTls(dir: string, tlsDir: string, options: { dynsec?: boolean; port?: number } = {}): Promise<RunningMosquitto & { log: string }> {
  const port = options.port ?? (await freePort());
  const shipped = options.dynsec ? "mosquitto-dynsec.conf" : "mosquitto.conf";
  const dynsecFile = join(dir, "dynamic-security.json");
  const config = (await readFile(SHIPPED(shipped), "utf8"))
    .replaceAll("/etc/mosquitto/apt-ostree/", `${dir}/`)
    .replaceAll("/var/lib/mosquitto/dynamic-security.json", dynsecFile)
    .replace(/^listener 8883$/m, `listener ${port} 127.0.0.1`);
  if (!config.includes(`listener ${port} `)) throw new Error(`docs/mosquitto/${shipped} has no 'listener 8883' line to template`);
  const log = join(dir, "mosquitto.log");
  await writeFile(join(dir, "mosquitto.conf"), [config, "persistence false", `log_dest file ${log}`, "log_type all", ""].join("\n"));
  await writeFile(join(dir, "apt-ostree.acl"), await readFile(SHIPPED("apt-ostree.acl"), "utf8"));
  for (const file of ["ca.pem", "server.pem", "server.key"]) await writeFile(join(dir, file), await readFile(join(tlsDir, file)));
  await writeFile(log, "");
  // Kept across restarts of the same broker (options.port): the dynsec state mosquitto saved.
  if (options.dynsec && !(await readFile(dynsecFile).catch(() => null))) {
    await execa("mosquitto_ctrl", ["dynsec", "init", dynsecFile, "apt-ostree:server", randomBytes(18).toString("base64")]);
  }
  // Started as root, mosquitto drops to its own user: a test copy of the key may be world-readable,
  // and the plugin rewrites dynamic-security.json in place.
  await execa("chmod", ["0755", dir]);
  await execa("chmod", ["0644", ...["apt-ostree.acl", "ca.pem", "server.pem", "server.key"].map((file) => join(dir, file))]);
  await execa("chmod", ["0666", log, ...(options.dynsec ? [dynsecFile] : [])]);
  const child = await runMosquitto(join(dir, "mosquitto.conf"), port);
  return { port, pid: child.pid!, serverUrl: `mqtts://127.0.0.1:${port}`, log, stop: () => void child.kill("SIGTERM") };
}

async function runMosquitto(config: string, port: number): Promise<ChildProcess> {
  const child: ChildProcess = spawn("mosquitto", ["-c", config], { stdio: "ignore" });
  await until(
    () => new Promise<boolean>((resolve) => createConnection(port, "127.0.0.1").once("connect", function (this: Socket) { this.destroy(); resolve(true); }).once("error", () => resolve(false))),
    "mosquitto to listen",
  );
  return child;
}
