/**
 * The agent's control socket (default /run/apt-ostree/agent.sock, 0600): the CLI sends one JSON
 * request line and reads one JSON answer line, so operations run inside the agent, one at a time,
 * and never race with an update the server started.
 */
import type { DeviceTrust } from "../trust/device-trust.ts";
import { chmod, mkdir } from "node:fs/promises";
import { createConnection, createServer, type Server } from "node:net";
import { dirname } from "node:path";
import * as z from "zod/mini";
import { describeIssue } from "../../shared/zod.ts";
import { removeFile } from "../../shared/fs/remove-file.ts";
import { errorChain } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { upgrade } from "../ops/upgrade.ts";
import { layer } from "../ops/layer.ts";
import { MAX_REQUEST_ENTRIES } from "../layering/request.ts";
import type { AgentSettings } from "../config/settings.ts";
import type { Agent } from "./agent.ts";

const names = z.array(z.string().check(z.maxLength(200))).check(z.maxLength(MAX_REQUEST_ENTRIES));
const paths = z.array(z.string().check(z.maxLength(4096))).check(z.maxLength(MAX_REQUEST_ENTRIES));

export const ControlRequestSchema = z.discriminatedUnion("op", [
  z.object({ op: z.literal("state") }),
  z.object({ op: z.literal("upgrade"), ref: z.optional(z.string()), version: z.optional(z.string()), check: z.optional(z.boolean()), reboot: z.optional(z.boolean()) }),
  z.object({ op: z.literal("reboot") }),
  z.object({ op: z.literal("cancel") }),
  /** The health-check unit: wait up to `timeoutSeconds` for this boot's verdict. Not queued: it waits. */
  z.object({ op: z.literal("boot-verdict"), timeoutSeconds: z.number().check(z.positive()) }),
  /** The CLI changed the deployments: the agent checks its staged update still exists. */
  z.object({ op: z.literal("deployments-changed") }),
  /** install, uninstall, override: package layering (device/ops/layer.ts). */
  z.object({
    op: z.literal("layer"),
    install: z.optional(names),
    installLocal: z.optional(paths),
    uninstall: z.optional(names),
    uninstallAll: z.optional(z.boolean()),
    overrideRemove: z.optional(names),
    overrideReplace: z.optional(paths),
    overrideReset: z.optional(z.union([names, z.literal("all")])),
    dryRun: z.optional(z.boolean()),
    idempotent: z.optional(z.boolean()),
    allowInactive: z.optional(z.boolean()),
    cacheOnly: z.optional(z.boolean()),
    reboot: z.optional(z.boolean()),
  }),
]);
export type ControlRequest = z.infer<typeof ControlRequestSchema>;
export type ControlAnswer = { ok: true; result: unknown } | { ok: false; code: string; error: string };

export async function handleControl(agent: Agent, settings: AgentSettings, trust: DeviceTrust, request: ControlRequest): Promise<unknown> {
  switch (request.op) {
    case "state":
      return { state: agent.state };
    case "upgrade":
      return upgrade(agent, settings, trust, request);
    case "reboot":
      return { rebooting: await agent.rebootNow(), state: agent.state.name };
    case "cancel":
      return { cancelled: await agent.cancel(), state: agent.state.name };
    case "boot-verdict":
      return agent.waitForBootVerdict(request.timeoutSeconds * 1000);
    case "deployments-changed":
      await agent.reconcile();
      return { state: agent.state.name };
    case "layer": {
      const { op: _op, reboot, ...layerRequest } = request;
      const result = await agent.runLayering(() => layer({ settings, state: () => agent.state, log: agent.log, deploymentsChanged: () => agent.reconcile() }, layerRequest));
      const rebooting = Boolean(reboot && result.deployed) && (await agent.rebootForLayering());
      return { ...result, rebooting };
    }
  }
}

export async function serveControlSocket(path: string, handle: (request: ControlRequest) => Promise<unknown>, log: Logger): Promise<Server> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  await removeFile(path);
  let busy: Promise<unknown> = Promise.resolve();
  const server = createServer((socket) => {
    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const newline = buffer.indexOf("\n");
      if (newline < 0) {
        if (buffer.length > 65_536) socket.destroy();
        return;
      }
      const line = buffer.slice(0, newline);
      const answer = (async (): Promise<ControlAnswer> => {
        let parsed: ReturnType<typeof ControlRequestSchema.safeParse>;
        try {
          parsed = ControlRequestSchema.safeParse(JSON.parse(line));
        } catch (error) {
          return { ok: false, code: "E_BAD_REQUEST", error: `bad control request: ${(error as Error).message}` };
        }
        if (!parsed.success) return { ok: false, code: "E_BAD_REQUEST", error: `bad control request: ${describeIssue(parsed.error.issues[0]!)}` };
        const request: ControlRequest = parsed.data;
        // One operation at a time, in arrival order; a verdict only waits and a state only reads, so
        // they hold no one up and wait for no one (status answers during a long upgrade).
        const queued = request.op !== "boot-verdict" && request.op !== "state";
        const run = queued ? busy.then(() => handle(request)) : handle(request);
        if (queued) busy = run.catch(() => undefined);
        try {
          return { ok: true, result: await run };
        } catch (error) {
          return { ok: false, code: (error as { code?: string }).code ?? "E_FAILED", error: errorChain(error) };
        }
      })();
      void answer.then((a) => socket.end(`${JSON.stringify(a)}\n`));
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  log.info({ event: "agent.control.listening", path }, `control socket ${path}`);
  return server;
}

/** CLI side: the answer, or null when no agent listens on `path`. */
export function askAgent(path: string, request: ControlRequest): Promise<ControlAnswer | null> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let data = "";
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on("data", (chunk: string) => (data += chunk));
    socket.on("end", () => {
      try {
        resolve(JSON.parse(data) as ControlAnswer);
      } catch {
        reject(new Error(`the agent at ${path} answered something that is not JSON`));
      }
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT" || error.code === "ECONNREFUSED") resolve(null);
      else reject(error);
    });
  });
}
