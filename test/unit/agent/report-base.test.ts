import { describe, expect, it } from "vitest";
import { reportBase } from "../../../device/agent/report.ts";
import type { Deployment } from "../../../device/sysroot/deployments.ts";
import { REPORT_LIMITS } from "../../../shared/wire/report.ts";

const A = "a".repeat(64);
const L = "1".repeat(64);

function deployment(flags: Partial<Deployment>): Deployment {
  return { id: `debian-${L}.0`, osname: "debian", checksum: L, base: A, serial: 0, version: "2", origin: "debian/ref", timestamp: 1, booted: true, staged: false, pending: false, rollback: false, pinned: false, ...flags };
}

describe("the report's deployments", () => {
  it("name the signed release under a package layer, with what was layered on it", () => {
    const report = reportBase([deployment({ layered: { packages: ["htop"], removed: ["nano"], replaced: [] } })], { architecture: "amd64", groups: [] }, "dev-1", "x", new Date(0));
    expect(report.booted).toEqual({ commit: A, version: "2", layered: { packages: ["htop"], removed: ["nano"], replaced: [] } });
  });

  it("leave the field out without layering (older servers refuse fields they do not know), and cut a long list saying so", () => {
    expect(reportBase([deployment({ checksum: A })], { architecture: "amd64", groups: [] }, "dev-1", "x", new Date(0)).booted).toEqual({ commit: A, version: "2" });
    const many = Array.from({ length: REPORT_LIMITS.layeredNames + 5 }, (_, i) => `p${i}`);
    const layered = reportBase([deployment({ layered: { packages: many, removed: [], replaced: [] } })], { architecture: "amd64", groups: [] }, "dev-1", "x", new Date(0)).booted!.layered!;
    expect(layered.packages).toHaveLength(REPORT_LIMITS.layeredNames);
    expect(layered.truncated).toBe(true);
  });
});
