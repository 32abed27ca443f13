/**
 * A device whose clock is a day behind or a day ahead of the server's (no RTC battery, no NTP):
 * the agent process runs with its JavaScript clock shifted (test/helpers/skewed-clock.cjs)
 * against the real server over TLS. The broker refuses its first token, the agent reads the
 * server's time from /healthz over HTTPS, stamps its next tokens with it and comes online.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentFixture } from "../../helpers/agent-fixture.ts";
import { AGENT_CLI } from "../../helpers/cli.ts";
import { until } from "../../helpers/wait.ts";

const SKEWED_CLOCK = fileURLToPath(new URL("../../helpers/skewed-clock.cjs", import.meta.url));
const DAY_MS = 86_400_000;
const fixture = new AgentFixture();
let config: string;
let agent: ChildProcess | null = null;

async function startSkewed(offsetMs: number, logName: string): Promise<string> {
  const logFile = join(fixture.dir, logName);
  const log = await open(logFile, "w");
  agent = spawn(process.execPath, ["--require", SKEWED_CLOCK, AGENT_CLI, "--config", config], {
    stdio: ["ignore", log.fd, log.fd],
    env: { ...process.env, APT_OSTREE_TEST_CLOCK_OFFSET_MS: String(offsetMs), APT_OSTREE_LOG_LEVEL: "info" },
  });
  agent.once("exit", () => void log.close());
  return logFile;
}

async function stop(): Promise<void> {
  const child = agent;
  agent = null;
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  }
}

const events = async (file: string, event: string) =>
  (await readFile(file, "utf8")).split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line)).filter((line) => line.event === event);

beforeAll(async () => {
  await fixture.setUp("agent-clock-skew", { tls: true });
  config = await fixture.writeConfig();
}, 60_000);

afterAll(async () => {
  await stop();
  await fixture.tearDown();
});

describe("a device clock a day off", () => {
  for (const [offsetMs, word] of [[-DAY_MS, "behind"], [DAY_MS, "ahead of"]] as const) {
    it(`comes online with its clock a day ${word} the server's`, async () => {
      const logFile = await startSkewed(offsetMs, `agent${offsetMs}.log`);
      try {
        await until(async () => (await events(logFile, "agent.mqtt.connected")).length > 0, "the skewed agent to connect", 60_000, {
          detail: async () => (await readFile(logFile, "utf8")).split("\n").slice(-8).join("\n"),
        });
        // Its first token was refused: the offset was measured before the connection that worked.
        expect((await events(logFile, "agent.mqtt.error"))[0]?.msg).toMatch(/refused the connection/);
        const [measured] = await events(logFile, "agent.clock.offset");
        expect(Math.abs(measured.offsetSeconds + offsetMs / 1000)).toBeLessThan(5);
        expect(measured.msg).toContain(`s ${word} the server's`);
        await until(async () => (await fixture.device())?.online, "the device online on the server", 30_000);
      } finally {
        await stop();
      }
    }, 120_000);
  }
});
