import { describe, expect, it } from "vitest";
import { runProgram } from "../../../shared/process/run.ts";

describe("runProgram", () => {
  it("feeds input to stdin and closes it, and collects stdout, stderr and both in order", async () => {
    const result = await runProgram("sh", ["-c", "cat; echo err >&2; exit 3"], { input: "a\nb\n" });
    expect(result).toMatchObject({ exitCode: 3, stdout: "a\nb", stderr: "err", all: "a\nb\nerr" });
  });

  it("gives the program /dev/null without input, and only `env` with cleanEnv", async () => {
    expect((await runProgram("sh", ["-c", "cat; echo done"])).stdout).toBe("done");
    process.env.APT_OSTREE_TEST_LEAK = "leaked";
    try {
      expect((await runProgram("/bin/sh", ["-c", 'echo "${APT_OSTREE_TEST_LEAK:-none} $ONLY"'], { env: { ONLY: "this" }, cleanEnv: true })).stdout).toBe("none this");
      expect((await runProgram("/bin/sh", ["-c", 'echo "$APT_OSTREE_TEST_LEAK"'], { env: { ONLY: "this" } })).stdout).toBe("leaked");
    } finally {
      delete process.env.APT_OSTREE_TEST_LEAK;
    }
  });

  it("does not fail when the program exits without reading its input", async () => {
    expect((await runProgram("true", [], { input: "x".repeat(1 << 20) })).exitCode).toBe(0);
  });
});
