/**
 * A QMP client for one command at a time (qemu's JSON machine protocol on a Unix socket): reads
 * the greeting, negotiates capabilities, sends the command and returns its `return` or throws its
 * `error`. Events qemu sends meanwhile are skipped.
 */
import { createConnection } from "node:net";
import { AptOstreeError } from "../shared/errors.ts";

export class QmpError extends AptOstreeError {
  constructor(message: string) {
    super("E_QMP", message);
  }
}

export async function qmpCommand(socketPath: string, execute: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<unknown> {
  const socket = createConnection(socketPath);
  const lines: Array<Record<string, unknown>> = [];
  let buffered = "";
  let wake: (() => void) | null = null;
  let failure: Error | null = null;
  socket.setEncoding("utf8");
  socket.on("data", (text: string) => {
    buffered += text;
    for (let at = buffered.indexOf("\n"); at >= 0; at = buffered.indexOf("\n")) {
      const line = buffered.slice(0, at).trim();
      buffered = buffered.slice(at + 1);
      if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    wake?.();
  });
  socket.on("error", (error) => {
    failure = error;
    wake?.();
  });
  const deadline = Date.now() + timeoutMs;
  const next = async (): Promise<Record<string, unknown>> => {
    for (;;) {
      if (failure) throw new QmpError(`QMP ${socketPath}: ${(failure as Error).message}`);
      const line = lines.shift();
      if (line && !("event" in line)) return line;
      if (line) continue;
      if (Date.now() > deadline) throw new QmpError(`QMP ${socketPath}: no answer to ${execute} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 100);
      });
    }
  };
  try {
    const greeting = await next();
    if (!("QMP" in greeting)) throw new QmpError(`QMP ${socketPath}: no greeting (${JSON.stringify(greeting)})`);
    socket.write(`${JSON.stringify({ execute: "qmp_capabilities" })}\n`);
    await next();
    socket.write(`${JSON.stringify({ execute, ...(args ? { arguments: args } : {}) })}\n`);
    const answer = await next();
    if ("error" in answer) throw new QmpError(`QMP ${execute}: ${JSON.stringify(answer.error)}`);
    return answer.return;
  } finally {
    socket.destroy();
  }
}
