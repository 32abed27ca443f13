/**
 * The deployment list the agent's "staged" report assumes after a deploy (deploymentsAfterDeploy)
 * is the one `ostree admin status` then shows: a new commit, one that makes the deploy prune, and
 * a commit deployed a second time (serial 1).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deployRetaining } from "../../../device/sysroot/deploy.ts";
import { deploymentsAfterDeploy, readDeployments, sysrootRepo } from "../../../device/sysroot/deployments.ts";
import { parseCommitObject } from "../../../shared/ostree/commit-object.ts";
import { runOstree } from "../../../shared/ostree/exec.ts";
import { readCommitObject, setRef } from "../../../shared/ostree/repo.ts";
import { AgentFixture, REF } from "../../helpers/agent-fixture.ts";
import { OSNAME } from "../../helpers/simulated-bootloader.ts";

const fixture = new AgentFixture();

beforeAll(async () => {
  await fixture.setUp("deployments-after-deploy", { publishUpTo: 3 });
}, 60_000);
afterAll(() => fixture.tearDown());

describe("deploymentsAfterDeploy", () => {
  it("predicts ostree's list after each deploy, pruning and serials included", async () => {
    const facts = { sysroot: fixture.settings.sysroot, rootDir: fixture.settings.rootDir };
    const repo = sysrootRepo(facts.sysroot);
    const lengths: number[] = [];
    for (const version of [2, 3, 1]) {
      const checksum = fixture.commits.get(version)!;
      await runOstree(["pull-local", `--repo=${repo}`, fixture.repo, checksum]);
      await setRef(repo, REF, checksum);
      const before = await readDeployments(facts);
      await deployRetaining({ ...facts, osname: OSNAME, revision: REF, before });
      const timestamp = parseCommitObject(await readCommitObject(repo, checksum)).timestamp;
      const predicted = deploymentsAfterDeploy(before, { osname: OSNAME, checksum, version: String(version), origin: REF, timestamp, staged: false });
      expect(predicted).toEqual(await readDeployments(facts));
      expect(predicted[0]).toMatchObject({ checksum, pending: true, booted: false });
      lengths.push(predicted.length);
    }
    // v2 beside the booted v1; v3 prunes v2; v1 again is v1's second deployment.
    expect(lengths).toEqual([2, 2, 2]);
    const after = await readDeployments(facts);
    expect(after.map((d) => [d.checksum, d.serial, d.booted])).toEqual([
      [fixture.commits.get(1), 1, false],
      [fixture.commits.get(1), 0, true],
    ]);
  });
});
