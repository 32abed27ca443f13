/**
 * The test console: a root shell inside a VM built with `image build --test-console`, reached
 * through a qemu virtio serial port on a Unix socket. Test harnesses use it to look inside the
 * guest (`ostree admin status`, the agent's journal, its state file) without a network login.
 * Each command's output is framed by markers the shell prints with a nonce, so output left
 * over from an earlier command (or a shell that restarted) is never mistaken for it.
 */
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { AptOstreeError } from "../shared/errors.ts";

export class TestConsoleError extends AptOstreeError {
  constructor(message: string) {
    super("E_TEST_CONSOLE", message);
  }
}

export interface ConsoleResult {
  exitCode: number;
  /** stdout and stderr together, with the terminal's CRLF turned into LF. */
  output: string;
}

/** Commands are short shell lines; a long one is a mistake in the harness. */
const MAX_COMMAND_LENGTH = 3500;
/** Output kept per command: a runaway command must not fill the harness's memory. */
const MAX_OUTPUT = 4 * 1024 * 1024;
/**
 * The begin marker is the line's first command, so it comes back at once from a live shell. When
 * it does not, the shell that answered the ping has died with the line (the guest's shell sees
 * end-of-file while the host's connection is still being announced to it, and systemd starts
 * another): ping again and retype. A guest too slow to print the marker in time may then get the
 * line twice; the line runs its command only once (a marker directory), and the first answer counts.
 */
const BEGIN_WITHIN_MS = 15_000;

export class TestConsole {
  constructor(private readonly socketPath: string) {}

  /**
   * Runs `command` once in the guest's shell and returns its exit code and output. First waits
   * (within `timeoutMs`) for the shell to answer a harmless ping, which covers a guest still
   * booting: pings typed before the shell starts may be answered late or lost with a reboot,
   * and only then is the command typed, once.
   */
  async run(command: string, timeoutMs = 60_000): Promise<ConsoleResult> {
    if (command.length > MAX_COMMAND_LENGTH) throw new TestConsoleError(`a console command is limited to ${MAX_COMMAND_LENGTH} characters, this one has ${command.length}`);
    if (command.includes("\n")) throw new TestConsoleError("a console command is one line: join the steps with ';' or '&&'");
    const nonce = randomBytes(8).toString("hex");
    const ping = `printf '@@rdy%s\\n' ${nonce}\n`;
    // Once only, even typed twice (see BEGIN_WITHIN_MS): the first run makes the marker directory.
    const once = `"\${TMPDIR:-/tmp}/.apt-ostree-console-${nonce}"`;
    const line = `printf '@@beg%s\\n' ${nonce}; if mkdir ${once} 2>/dev/null; then { ${command}\n} </dev/null 2>&1; else echo 'already run'; false; fi; printf '@@end%s:%d\\n' ${nonce} $?\n`;
    const ready = `@@rdy${nonce}\n`;
    const begin = `@@beg${nonce}\n`;
    const end = new RegExp(`@@end${nonce}:(\\d+)\\n`);
    const socket = await this.connect(timeoutMs);
    try {
      return await new Promise<ConsoleResult>((resolve, reject) => {
        let text = "";
        let typed = false;
        let lost: NodeJS.Timeout | undefined;
        const finish = (error: Error | null, result?: ConsoleResult) => {
          clearTimeout(deadline);
          clearTimeout(lost);
          clearInterval(pinging);
          socket.removeAllListeners("data");
          if (error) reject(error);
          else resolve(result!);
        };
        const deadline = setTimeout(() => finish(new TestConsoleError(`no answer from the test console within ${Math.round(timeoutMs / 1000)} s to: ${command.slice(0, 200)}\nlast output:\n${text.slice(-800)}`)), timeoutMs);
        let pinging = setInterval(() => socket.write(ping), 3000);
        const retype = () => {
          typed = false;
          text = "";
          socket.write(ping);
          pinging = setInterval(() => socket.write(ping), 3000);
        };
        socket.on("data", (chunk: Buffer) => {
          text = (text + chunk.toString("utf8").replace(/\r\n/g, "\n")).slice(-MAX_OUTPUT);
          if (!typed) {
            if (!text.includes(ready)) return;
            typed = true;
            clearInterval(pinging);
            socket.write(line);
            lost = setTimeout(retype, BEGIN_WITHIN_MS);
          }
          const at = text.indexOf(begin);
          if (at === -1) return;
          clearTimeout(lost);
          const rest = text.slice(at + begin.length);
          const match = end.exec(rest);
          if (match) finish(null, { exitCode: Number(match[1]), output: rest.slice(0, match.index) });
        });
        socket.once("close", () => finish(new TestConsoleError(`the test console closed while running: ${command.slice(0, 200)} (did the VM reboot or stop?)`)));
        socket.write(ping);
      });
    } finally {
      socket.destroy();
    }
  }

  /** Like run(), but a non-zero exit is an error that shows the output. */
  async check(command: string, timeoutMs?: number): Promise<string> {
    const result = await this.run(command, timeoutMs);
    if (result.exitCode !== 0) throw new TestConsoleError(`in the VM, '${command.slice(0, 200)}' exited ${result.exitCode}:\n${result.output.slice(-2000)}`);
    return result.output;
  }

  private async connect(timeoutMs: number): Promise<Socket> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await new Promise<Socket>((resolve, reject) => {
          const socket = connect(this.socketPath);
          socket.once("connect", () => resolve(socket));
          socket.once("error", reject);
        });
      } catch (error) {
        if (Date.now() > deadline) throw new TestConsoleError(`cannot reach the test console at ${this.socketPath}: ${(error as Error).message} (is the VM running with a test console?)`);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }
}
