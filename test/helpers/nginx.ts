/**
 * A private nginx serving a folder as plain static files, as any web host or CDN origin would
 * (Debian's `nginx`, which scripts/setup.sh installs): a loopback port and prefix of the test's
 * own, its stock static handling (Range, ETag, If-Modified-Since), and an access log that says
 * what was asked and answered.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { freePort } from "./mosquitto.ts";
import { makeTempDir, removeTree } from "./tmp.ts";
import { until } from "./wait.ts";

export interface AccessLogLine {
  method: string;
  path: string;
  status: number;
  bytes: number;
  /** The request's Range header, "-" when none. */
  range: string;
}

export interface RunningNginx {
  port: number;
  /** http://127.0.0.1:port */
  url: string;
  /** The requests served so far. */
  accessLog(): Promise<AccessLogLine[]>;
  stop(): Promise<void>;
}

/** Serves `root` (read at each request: a symlink made later is followed). */
export async function startNginx(name: string, root: string): Promise<RunningNginx> {
  const dir = await makeTempDir(`nginx-${name}`);
  const port = await freePort();
  await mkdir(join(dir, "tmp"));
  const log = join(dir, "access.log");
  const temp = (kind: string) => `${kind}_temp_path ${join(dir, "tmp", kind)};`;
  await writeFile(
    join(dir, "nginx.conf"),
    [
      // The tests' folders are root's and private: the worker reads them as root.
      "user root root;",
      "worker_processes 1;",
      `pid ${join(dir, "nginx.pid")};`,
      `error_log ${join(dir, "error.log")} warn;`,
      "events { worker_connections 256; }",
      "http {",
      '  log_format plain \'$request_method $uri $status $body_bytes_sent "$http_range"\';',
      `  access_log ${log} plain;`,
      ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((kind) => `  ${temp(kind)}`),
      "  default_type application/octet-stream;",
      "  types { application/json json; }",
      `  server { listen 127.0.0.1:${port}; root ${root}; location / { } }`,
      "}",
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn("nginx", ["-p", dir, "-c", join(dir, "nginx.conf"), "-g", "daemon off;"], { stdio: ["ignore", "ignore", "pipe"] });
  let failure = "";
  child.once("error", (error) => (failure = `${error.message} (run scripts/setup.sh, or apt-get install nginx)`));
  child.stderr!.setEncoding("utf8").on("data", (text: string) => (failure += text));
  const running = () => child.exitCode === null && child.signalCode === null;
  const url = `http://127.0.0.1:${port}`;
  await until(async () => {
    if (!running()) throw new Error(`nginx ended: ${failure}`);
    return (await fetch(`${url}/`).catch(() => null)) !== null;
  }, "nginx to answer", 15_000, { detail: () => failure, rethrow: true });
  return {
    port,
    url,
    accessLog: async () =>
      (await readFile(log, "utf8").catch(() => ""))
        .split("\n")
        .filter(Boolean)
        .map((line) => {
          const [, method, path, status, bytes, range] = /^(\S+) (\S+) (\d+) (\d+) "(.*)"$/.exec(line) ?? [];
          return { method: method ?? "", path: path ?? "", status: Number(status), bytes: Number(bytes), range: range ?? "" };
        }),
    stop: async () => {
      if (running()) {
        const ended = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGQUIT");
        await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 5000))]);
        if (running()) child.kill("SIGKILL");
      }
      await removeTree(dir);
    },
  };
}
