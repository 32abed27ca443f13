import { describe, expect, it } from "vitest";
import { PHASE_NAMES, phases } from "../../soak/power-cut/phases.ts";
import { summarize } from "../../soak/power-cut/summary.ts";
import type { TrialResult } from "../../soak/power-cut/trial.ts";

const trial = (over: Partial<TrialResult>): TrialResult => ({ index: 0, phase: "finalize", seed: 1, delayMs: 0, cutAfter: "rebooting", reportedAfterCut: [], outcome: "healthy-v2", passed: true, bootsAfterCut: 1, recoverySeconds: 60, failures: [], artifacts: null, ...over });

describe("power-cut campaign", () => {
  it("defines every phase once; the rollback and two bootloader phases roll out the bad release, and a good release must end installed", () => {
    const all = phases(2);
    expect(all.map((p) => p.name)).toEqual(PHASE_NAMES);
    expect(all.filter((p) => p.release === "v3").map((p) => p.name)).toEqual(["rollback", "grubenv-copy", "grubenv-both"]);
    expect(all.filter((p) => p.fault).map((p) => p.name)).toEqual(["grubenv-copy", "grubenv-both", "grubenv-bless"]);
    for (const phase of all.filter((p) => p.release === "v2")) expect(phase.expected).toEqual(["healthy-v2"]);
    // The fallback boot comes after the tries: with 2 tries it is the third kernel start.
    expect(all.find((p) => p.name === "rollback")!.marker).toMatchObject({ kind: "serial", count: 3 });
  });

  it("tabulates trials per phase with outcomes, where cuts fell, and boots and recovery as median/max", () => {
    const table = summarize([
      trial({ recoverySeconds: 100, bootsAfterCut: 2 }),
      trial({ index: 1, recoverySeconds: 40, bootsAfterCut: 1, cutAfter: "staged" }),
      trial({ index: 2, phase: "rollback", outcome: "boot-loop", passed: false, bootsAfterCut: 7, recoverySeconds: 900 }),
    ]);
    const rows = table.split("\n");
    expect(rows[2]).toBe("| finalize | 2 | 2 | healthy-v2 2 | rebooting 1, staged 1 | 1/2 | 40/100 |");
    expect(rows[3]).toBe("| rollback | 1 | 0 | boot-loop 1 | rebooting 1 | 7/7 | 900/900 |");
  });
});
