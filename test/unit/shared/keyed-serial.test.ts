import { describe, expect, it } from "vitest";
import { KeyedSerial } from "../../../shared/keyed-serial.ts";

/** A task that records when it starts and ends, and ends when the test says. */
function gated(log: string[], name: string) {
  let open = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  return {
    task: async () => {
      log.push(`${name}:start`);
      await gate;
      log.push(`${name}:end`);
      return name;
    },
    open: () => open(),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("KeyedSerial", () => {
  it("runs one key's tasks one at a time in order, and other keys meanwhile", async () => {
    const serial = new KeyedSerial();
    const log: string[] = [];
    const a1 = gated(log, "a1");
    const a2 = gated(log, "a2");
    const b1 = gated(log, "b1");
    const results = [serial.run("a", a1.task), serial.run("a", a2.task), serial.run("b", b1.task)];
    await tick();
    // a2 waits for a1; b1 does not wait for either.
    expect(log).toEqual(["a1:start", "b1:start"]);
    b1.open();
    await tick();
    expect(log).toEqual(["a1:start", "b1:start", "b1:end"]);
    a2.open();
    await tick();
    expect(log).not.toContain("a2:start");
    a1.open();
    expect(await Promise.all(results)).toEqual(["a1", "a2", "b1"]);
    expect(log).toEqual(["a1:start", "b1:start", "b1:end", "a1:end", "a2:start", "a2:end"]);
  });

  it("goes on after a task that fails, and forgets a key once its tasks are done", async () => {
    const serial = new KeyedSerial();
    const failing = serial.run("a", () => Promise.reject(new Error("boom")));
    const next = serial.run("a", () => "after");
    await expect(failing).rejects.toThrow("boom");
    expect(await next).toBe("after");
    expect(serial.run("b", () => 1)).toBeInstanceOf(Promise);
    await tick();
    expect(serial.busy).toBe(0);
  });
});
