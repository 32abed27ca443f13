import { describe, expect, it } from "vitest";
import { summarizeFleet } from "../../../server/fleet/summary.ts";
import type { DeviceRecord } from "../../../server/fleet/store.ts";

const device = (id: string, version: string): DeviceRecord => ({
  id, publicKey: "", enrollment: "accepted", groups: [], tags: [], architecture: null, state: "healthy",
  booted: { commit: "0".repeat(64), version }, staged: null, pending: null, rollback: null, agentVersion: null,
  online: true, lastSeen: null, lastCounter: null, enrolledAt: "2026-01-01T00:00:00Z",
});

describe("fleet summary", () => {
  it("counts versions named like Object's own properties as plain numbers", () => {
    const summary = summarizeFleet([device("a", "constructor"), device("b", "constructor"), device("c", "__proto__"), device("d", "toString")], []);
    expect(summary.byVersion).toEqual({ constructor: 2, ["__proto__"]: 1, toString: 1 });
    expect(Object.getPrototypeOf(summary.byVersion)).toBe(Object.prototype);
    expect(JSON.parse(JSON.stringify(summary.byVersion))).toEqual({ constructor: 2, ["__proto__"]: 1, toString: 1 });
  });
});
