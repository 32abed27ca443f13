/**
 * The test console's protocol against the shell the guest runs (/bin/sh reading a byte stream),
 * here behind a Unix socket as qemu's chardev would put it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TestConsole } from "../../../qemu/test-console.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let server: Server;
let shells: ChildProcess[];

/** A socket whose far end is a shell started `delayMs` after the connection (a guest still booting). */
async function shellBehindSocket(delayMs = 0): Promise<string> {
  const path = join(dir, "console.sock");
  server = createServer((socket: Socket) => {
    setTimeout(() => {
      const shell = spawn("/bin/sh", [], { stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, TMPDIR: dir } });
      shells.push(shell);
      socket.pipe(shell.stdin!);
      shell.stdout!.pipe(socket);
      socket.on("close", () => shell.kill());
    }, delayMs);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return path;
}

/**
 * A guest whose first shell answers the ping and then dies with the rest of its input, as the
 * guest's shell does when it reads end-of-file before it learns the host has connected; systemd
 * starts the next one 2 s later.
 */
async function dyingShellBehindSocket(): Promise<string> {
  const path = join(dir, "console.sock");
  server = createServer((socket: Socket) => {
    const first = spawn("/bin/sh", ["-c", 'read -r line; eval "$line"; sleep 0.5'], { stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, TMPDIR: dir } });
    first.stdin!.on("error", () => undefined);
    shells.push(first);
    socket.pipe(first.stdin!);
    first.stdout!.pipe(socket, { end: false });
    first.on("exit", () => {
      socket.unpipe(first.stdin!);
      const lost = () => undefined;
      socket.on("data", lost);
      setTimeout(() => {
        socket.off("data", lost);
        const next = spawn("/bin/sh", [], { stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, TMPDIR: dir } });
        shells.push(next);
        socket.pipe(next.stdin!);
        next.stdout!.pipe(socket);
      }, 2000);
    });
    socket.on("close", () => shells.forEach((shell) => shell.kill()));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return path;
}

beforeEach(async () => {
  dir = await makeTempDir("test-console");
  shells = [];
});
afterEach(async () => {
  for (const shell of shells) shell.kill();
  await new Promise((resolve) => server?.close(resolve));
  await removeTree(dir);
});

describe("test console", () => {
  it("returns a command's exit code and its stdout and stderr together", async () => {
    const console = new TestConsole(await shellBehindSocket());
    expect(await console.run("echo out; echo err >&2; exit_code=3; (exit $exit_code)")).toEqual({ exitCode: 3, output: "out\nerr\n" });
    expect(await console.check("printf 'a\\nb\\n' | wc -l")).toBe("2\n");
    await expect(console.check("false")).rejects.toThrow(/'false' exited 1/);
  });

  it("waits for a shell that starts late, and runs the command once", async () => {
    const console = new TestConsole(await shellBehindSocket(7000));
    const marker = join(dir, "ran");
    expect((await console.run(`echo x >> ${marker}; cat ${marker}`, 30_000)).output).toBe("x\n");
  }, 40_000);

  it("types the command again when the shell that answered the ping died with it, and runs it once", async () => {
    const console = new TestConsole(await dyingShellBehindSocket());
    const marker = join(dir, "ran");
    expect((await console.run(`echo x >> ${marker}; cat ${marker}`, 40_000)).output).toBe("x\n");
  }, 50_000);

  it("does not read the harness's next lines as the command's input", async () => {
    const console = new TestConsole(await shellBehindSocket());
    expect((await console.run("cat; echo done")).output).toBe("done\n");
  });

  it("refuses a multi-line command, and gives up after its timeout", async () => {
    const console = new TestConsole(await shellBehindSocket());
    await expect(console.run("echo a\necho b")).rejects.toThrow(/one line/);
    await expect(console.run("sleep 5", 1000)).rejects.toThrow(/no answer from the test console within 1 s/);
  });

  it("says so when nothing listens", async () => {
    await expect(new TestConsole(join(dir, "none.sock")).run("true", 1200)).rejects.toThrow(/cannot reach the test console/);
    server = createServer();
  });
});
