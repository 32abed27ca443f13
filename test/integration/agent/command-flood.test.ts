/**
 * A hostile broker sending commands over and over: the exact command taken last, replayed, is
 * dropped before it is parsed or verified (no second report), and commands that arrive while an
 * earlier one is taken wait in a queue of at most MAX_PENDING_COMMANDS (the oldest waiting is
 * dropped, logged). The real agent on the fixture's sysroot, its commands handed over as the
 * MQTT link would.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_PENDING_COMMANDS } from "../../../device/agent/agent.ts";
import { runAgent } from "../../../device/agent/run.ts";
import { signCommand } from "../../../shared/wire/command.ts";
import { manifestPath, signManifest, type Manifest } from "../../../shared/wire/manifest.ts";
import { AgentFixture, DEVICE_ID, REF } from "../../helpers/agent-fixture.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();
let logLines: Array<Record<string, unknown>> = [];
const logged = (event: string) => logLines.filter((line) => line.event === event);

beforeAll(async () => {
  await fixture.setUp("agent-command-flood", { publishUpTo: 2, bootedVersion: 2 });
  const log: Logger = pino({ level: "debug" }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
  fixture.agent = await runAgent(fixture.settings, log);
  await until(async () => (await fixture.device())?.booted?.version === "2", "dev-1 to report v2");
}, 60_000);
afterAll(() => fixture.tearDown());

describe("a broker repeating commands", () => {
  it("drops an exact replay of the command taken last: no second parse, signature check or report", async () => {
    const published: Manifest = JSON.parse(await readFile(join(fixture.repo, manifestPath("stable", REF)), "utf8")).manifest;
    // A signed command whose manifest is refused (a downgrade): each time it is taken, a failed report goes out.
    const downgrade = signManifest({ ...published, commit: fixture.commits.get(1)!, version: "1", sequence: 1, deltas: [] }, [fixture.key]);
    const payload = Buffer.from(signCommand({ type: "update", id: "replayed-1", device: DEVICE_ID, issued: new Date().toISOString(), manifest: downgrade }, [fixture.key]));
    const failedReports = async () => (await fixture.events()).filter((e) => e.report?.command === "replayed-1" && e.report.state === "failed").length;

    await fixture.agent!.agent.onCommand(payload);
    await until(async () => (await failedReports()) === 1 || null, "the refusal to be reported");
    for (let i = 0; i < 5; i++) await fixture.agent!.agent.onCommand(Buffer.from(payload));
    await fixture.agent!.agent.idle();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await failedReports()).toBe(1);
    expect(logged("agent.manifest.rejected")).toHaveLength(1);
    expect(logged("agent.command.replayed")).toHaveLength(5);
    expect(fixture.agent!.agent.state.name).toBe("idle");
  }, 60_000);

  it(`keeps at most ${MAX_PENDING_COMMANDS} commands waiting while one is taken, the newest`, async () => {
    logLines = [];
    const agent = fixture.agent!.agent;
    // Twenty garbage commands at once: the first is taken, the others wait.
    const all = Array.from({ length: 20 }, (_, i) => agent.onCommand(`{"garbage":${i}}`));
    await Promise.all(all);
    expect(logged("agent.command.dropped")).toHaveLength(20 - 1 - MAX_PENDING_COMMANDS);
    const rejected = logged("agent.command.rejected");
    expect(rejected).toHaveLength(1 + MAX_PENDING_COMMANDS);
    expect(rejected.every((line) => line.code === "E_COMMAND_REJECTED")).toBe(true);
  });
});
