import { describe, expect, it } from "vitest";
import { coalesce } from "../../../server/fleet/coalesce.ts";

/** A task that records overlap and waits until released. */
function gatedTask() {
  let running = 0;
  const stats = { runs: 0, maxConcurrent: 0 };
  const gates: Array<() => void> = [];
  const task = async () => {
    stats.runs++;
    running++;
    stats.maxConcurrent = Math.max(stats.maxConcurrent, running);
    await new Promise<void>((resolve) => gates.push(resolve));
    running--;
  };
  const releaseAll = async () => {
    while (true) {
      await new Promise((resolve) => setImmediate(resolve));
      const gate = gates.shift();
      if (!gate) return;
      gate();
    }
  };
  return { task, stats, releaseAll };
}

describe("coalesced task", () => {
  it("runs a thousand calls made during a run as one more run, never two at once", async () => {
    const { task, stats, releaseAll } = gatedTask();
    const run = coalesce(task);
    const first = run();
    const rest = Array.from({ length: 1000 }, () => run());
    await releaseAll();
    await Promise.all([first, ...rest]);
    expect(stats).toEqual({ runs: 2, maxConcurrent: 1 });
  });

  it("starts the queued run after the call, so a caller's change is seen", async () => {
    const seen: number[] = [];
    let value = 0;
    const run = coalesce(async () => {
      seen.push(value);
      await new Promise((resolve) => setTimeout(resolve, 5));
    });
    const first = run();
    await new Promise((resolve) => setImmediate(resolve));
    value = 1;
    const second = run();
    await Promise.all([first, second]);
    expect(seen).toEqual([0, 1]);
    await run();
    expect(seen).toEqual([0, 1, 1]);
  });

  it("goes on after a run that failed", async () => {
    let calls = 0;
    const run = coalesce(async () => {
      calls++;
      if (calls === 1) throw new Error("boom");
    });
    const first = run();
    const second = run();
    await expect(first).rejects.toThrow("boom");
    await second;
    expect(calls).toBe(2);
  });
});
