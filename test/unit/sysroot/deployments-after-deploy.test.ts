/** deploymentsAfterDeploy for staging, which needs a booted system and so only runs for real in the qemu e2e. */
import { describe, expect, it } from "vitest";
import { deploymentsAfterDeploy, type Deployment } from "../../../device/sysroot/deployments.ts";

const A = "a".repeat(64);
const B = "b".repeat(64);
const C = "c".repeat(64);

function deployment(checksum: string, flags: Partial<Deployment>): Deployment {
  return { id: `debian-${checksum}.0`, osname: "debian", checksum, base: checksum, serial: 0, version: checksum[0]!, origin: "debian/ref", timestamp: 1, booted: false, staged: false, pending: false, rollback: false, pinned: false, ...flags };
}

describe("deploymentsAfterDeploy, staged", () => {
  const booted = deployment(A, { booted: true });
  const added = { osname: "debian", checksum: B, version: "b", origin: "debian/ref", timestamp: 2, staged: true };

  it("lists the staged deployment first, pending, and prunes nothing until it is finalized", () => {
    const rollback = deployment(C, { rollback: true });
    const list = deploymentsAfterDeploy([booted, rollback], added);
    expect(list.map((d) => [d.checksum, d.staged, d.pending, d.booted, d.rollback])).toEqual([
      [B, true, true, false, false],
      [A, false, false, true, false],
      [C, false, false, false, true],
    ]);
    expect(list[0]).toMatchObject({ id: `debian-${B}.0`, serial: 0, version: "b", timestamp: 2 });
  });

  it("replaces an earlier staged deployment, as ostree does", () => {
    const earlier = deployment(C, { staged: true, pending: true });
    const list = deploymentsAfterDeploy([earlier, booted], added);
    expect(list.map((d) => d.checksum)).toEqual([B, A]);
  });

  it("gives a commit deployed again the next serial", () => {
    const list = deploymentsAfterDeploy([booted], { ...added, checksum: A, version: "a" });
    expect(list.map((d) => d.id)).toEqual([`debian-${A}.1`, `debian-${A}.0`]);
  });
});
