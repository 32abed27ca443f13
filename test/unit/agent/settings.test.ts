import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { AGENT_DEFAULTS, AgentConfigSchema, parseAgentConfig } from "../../../device/config/settings.ts";
import { windowStrategy } from "../../../device/strategy/window.ts";
import { rebootStrategy } from "../../../device/strategy/index.ts";

describe("agent settings", () => {
  it("ships a commented agent.yaml naming every setting with its default", async () => {
    const text = await readFile(new URL("../../../device/units/agent.yaml", import.meta.url), "utf8");
    const uncommented = text.split("\n").filter((l) => /^# [a-z][a-zA-Z]+: /.test(l)).map((l) => l.slice(2).replace(/\s+#.*$/, "")).join("\n");
    const parsed = parseAgentConfig(uncommented.replace("deviceId: null\n", ""), "agent.yaml");
    expect(Object.keys(parsed).sort()).toEqual(Object.keys(AgentConfigSchema.shape).filter((k) => k !== "deviceId").sort());
    for (const [key, value] of Object.entries(parsed)) if (key !== "ref") expect([key, value]).toEqual([key, AGENT_DEFAULTS[key as keyof typeof AGENT_DEFAULTS]]);
  });

  it.each([
    ["rebootStrategy: sometimes", /rebootStrategy: Invalid option/],
    ["bootTries: 0", /bootTries: /],
    ["server: ftp://x", /server: must be an http/],
    ["colour: blue", /unknown key colour/],
    ["rebootWindow: 2am", /rebootWindow: must look like 02:00-04:00/],
    ["[unclosed", /not valid YAML/],
  ])("refuses %s naming the key", (text, message) => {
    expect(() => parseAgentConfig(text, "/etc/apt-ostree/agent.yaml")).toThrow(message);
  });
});

describe("reboot strategies", () => {
  const at = (hh: number, mm: number) => new Date(2026, 0, 1, hh, mm, 0, 0);
  it("reboots inside the window only, also across midnight, and says how long to wait", () => {
    const window = windowStrategy("02:00-04:00");
    expect(window.canRebootNow(at(2, 30))).toBe(true);
    expect(window.canRebootNow(at(4, 0))).toBe(false);
    expect(window.retryInMs(at(1, 0))).toBe(60 * 60_000);
    const overnight = windowStrategy("23:00-01:00");
    expect(overnight.canRebootNow(at(23, 30))).toBe(true);
    expect(overnight.canRebootNow(at(0, 30))).toBe(true);
    expect(overnight.canRebootNow(at(12, 0))).toBe(false);
  });

  it("picks the strategy by its label", () => {
    expect(rebootStrategy({ rebootStrategy: "immediate", rebootWindow: "02:00-04:00" }).canRebootNow(at(12, 0))).toBe(true);
    expect(rebootStrategy({ rebootStrategy: "command", rebootWindow: "02:00-04:00" }).canRebootNow(at(12, 0))).toBe(false);
    expect(rebootStrategy({ rebootStrategy: "window", rebootWindow: "02:00-04:00" }).label).toBe("window");
  });
});
