/**
 * The control socket's order: operations one at a time in arrival order, except the two that
 * only wait or read (boot-verdict, state), which answer while a long operation runs. A real
 * Unix socket; the agent behind it is a function of the test's that holds "upgrade" until told.
 */
import { join } from "node:path";
import type { Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { askAgent, serveControlSocket, type ControlRequest } from "../../../device/agent/control-socket.ts";
import { silentLogger } from "../../../shared/log.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let server: Server | null = null;
let dir = "";

afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = null;
  if (dir) await removeTree(dir);
});

/** A socket whose "upgrade" runs until `release()`; every request is recorded as it starts. */
async function holdingSocket() {
  dir = await makeTempDir("control-socket");
  const path = join(dir, "agent.sock");
  const started: string[] = [];
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  server = await serveControlSocket(
    path,
    async (request: ControlRequest) => {
      started.push(request.op);
      if (request.op === "upgrade") await held;
      return { op: request.op };
    },
    silentLogger(),
  );
  return { path, started, release };
}

describe("the control socket", () => {
  it("answers state and boot-verdict while an upgrade runs, and queues the rest behind it", async () => {
    const { path, started, release } = await holdingSocket();
    const upgrade = askAgent(path, { op: "upgrade" });
    await expect.poll(() => started).toEqual(["upgrade"]);
    const cancel = askAgent(path, { op: "cancel" });
    expect(await askAgent(path, { op: "state" })).toEqual({ ok: true, result: { op: "state" } });
    expect(await askAgent(path, { op: "boot-verdict", timeoutSeconds: 1 })).toEqual({ ok: true, result: { op: "boot-verdict" } });
    // The cancel waits its turn: it has not started while the upgrade holds the queue.
    expect(started).toEqual(["upgrade", "state", "boot-verdict"]);
    release();
    expect(await upgrade).toEqual({ ok: true, result: { op: "upgrade" } });
    expect(await cancel).toEqual({ ok: true, result: { op: "cancel" } });
    expect(started).toEqual(["upgrade", "state", "boot-verdict", "cancel"]);
  });

  it("refuses a request it cannot parse, with the reason", async () => {
    const { path } = await holdingSocket();
    const answer = await askAgent(path, { op: "nonsense" } as unknown as ControlRequest);
    expect(answer).toMatchObject({ ok: false, code: "E_BAD_REQUEST", error: expect.stringMatching(/^bad control request/) });
  });
});
