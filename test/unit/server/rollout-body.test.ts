import { describe, expect, it } from "vitest";
import { createRollout } from "../../../server/http/api/rollouts.ts";
import type { RolloutEngine } from "../../../server/fleet/rollouts.ts";
import { manifestPath } from "../../../shared/wire/manifest.ts";

/** An engine that records whether the API got as far as asking it (which reads the repo). */
function recordingEngine(): { engine: RolloutEngine; calls: unknown[] } {
  const calls: unknown[] = [];
  return { calls, engine: { create: async (input: unknown) => (calls.push(input), Promise.reject(new Error("not in this test"))) } as unknown as RolloutEngine };
}

describe("POST /api/v1/rollouts body", () => {
  const select = { devices: ["dev-1"] };
  it.each([
    ["a channel that climbs out of channels/", { ref: "os/x", channel: "../../../data", select }, /channel: is not a channel name/],
    ["a channel with a slash", { ref: "os/x", channel: "stable/../x", select }, /channel/],
    ["a ref with a '..' segment", { ref: "os/../../config", select }, /ref: is not an OSTree ref/],
    ["an absolute ref", { ref: "/etc/passwd", select }, /ref: is not an OSTree ref/],
    ["a ref with a NUL", { ref: "os\0x", select }, /ref/],
    ["an empty version", { ref: "os/x", version: "", select }, /version/],
  ])("refuses %s before the engine reads anything", async (_name, body, message) => {
    const { engine, calls } = recordingEngine();
    await expect(createRollout(engine, body)).rejects.toMatchObject({ status: 400, message: expect.stringMatching(message) });
    expect(calls).toHaveLength(0);
  });

  it("passes a valid body to the engine", async () => {
    const { engine, calls } = recordingEngine();
    await expect(createRollout(engine, { ref: "debian/bookworm/qemu-amd64/appliance", channel: "stable", select })).rejects.toThrow("not in this test");
    expect(calls).toHaveLength(1);
  });

  it("manifestPath itself refuses names that would leave channels/", () => {
    expect(manifestPath("stable", "debian/bookworm/x")).toBe("channels/stable/debian/bookworm/x.json");
    expect(() => manifestPath("..", "x")).toThrow(/not a channel name/);
    expect(() => manifestPath("stable", "../x")).toThrow(/not an OSTree ref/);
  });
});
