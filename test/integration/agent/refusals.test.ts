/**
 * The agent refuses what it must not install, and the sysroot stays as it was: a tampered
 * manifest, one signed by an unknown key, an expired one, a downgrade, a manifest for another
 * architecture, and a commit whose OSTree signature is missing. Each refusal is reported to the
 * server as a failed outcome with the reason.
 */
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runOstree } from "../../../shared/ostree/exec.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { signCommand } from "../../../shared/wire/command.ts";
import { manifestPath, signManifest, type Manifest, type SignedManifest } from "../../../shared/wire/manifest.ts";
import { objectPath } from "../../../shared/ostree/repo.ts";
import { stateFilePath } from "../../../device/agent/state-file.ts";
import { AgentFixture, DEVICE_ID, REF } from "../../helpers/agent-fixture.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();
let published: Manifest;
let commandCount = 0;

/** What must not change: deployments, boot entries, refs, and the agent's state. */
async function diskSnapshot(): Promise<string> {
  const sysroot = fixture.disk.sysroot;
  const status = await runOstree(["admin", "status", `--sysroot=${sysroot}`]);
  const refs = await runOstree(["refs", `--repo=${join(sysroot, "ostree", "repo")}`]);
  const entries = (await readdir(join(sysroot, "boot", "loader", "entries"))).sort().join(",");
  const state = await readFile(stateFilePath(fixture.settings.stateDir), "utf8").catch(() => "(none)");
  return [status, refs, entries, JSON.parse(state === "(none)" ? "{}" : state).state?.name ?? "(none)"].join("\n");
}

async function sendUpdate(manifest: SignedManifest | Record<string, unknown>, commandKey = fixture.key): Promise<string> {
  const id = `refusal-${++commandCount}`;
  await fixture.agent!.agent.onCommand(signCommand({ type: "update", id, device: DEVICE_ID, issued: new Date().toISOString(), manifest: manifest as SignedManifest }, [commandKey]));
  return id;
}

async function refusalReported(id: string): Promise<string> {
  return until(async () => (await fixture.events()).find((e) => e.report?.command === id && e.report.state === "failed")?.report.error, `the refusal of ${id} to be reported`);
}

beforeAll(async () => {
  await fixture.setUp("agent-refusals", { publishUpTo: 2, bootedVersion: 2 });
  published = JSON.parse(await readFile(join(fixture.repo, manifestPath("stable", REF)), "utf8")).manifest;
  await fixture.startAgent();
  await until(async () => (await fixture.device())?.booted?.version === "2", "dev-1 to report v2");
}, 60_000);

afterAll(() => fixture.tearDown());

describe("refusals leave the device as it was", () => {
  it.each([
    ["a tampered manifest", () => ({ ...signManifest(published, [fixture.key]), manifest: { ...published, version: "2-evil" } }), /signature/],
    ["a manifest signed by an unknown key", () => signManifest(published, [generateKeyPair()]), /unknown key/],
    ["an expired manifest", () => signManifest({ ...published, issued: "2020-01-01T00:00:00Z", expires: "2020-01-02T00:00:00Z" }, [fixture.key]), /expired/],
    ["a downgrade below the booted sequence", () => signManifest({ ...published, commit: fixture.commits.get(1)!, version: "1", sequence: 1, deltas: [] }, [fixture.key]), /manifest sequence 1 is older than the booted/],
    ["a manifest for another architecture", () => signManifest({ ...published, architecture: "arm64" }, [fixture.key]), /arm64/],
    [
      "a signed downgrade outside a rollout",
      () => signManifest({ ...published, commit: fixture.commits.get(1)!, version: "1", sequence: 1, deltas: [], downgrade: true, issued: new Date().toISOString(), expires: new Date(Date.now() + 3600_000).toISOString() }, [fixture.key]),
      /signed downgrade from 2; a downgrade is taken only from a rollout's command/,
    ],
  ])("refuses %s", async (_name, manifest, reason) => {
    const before = await diskSnapshot();
    const id = await sendUpdate(manifest());
    expect(await refusalReported(id)).toMatch(reason);
    expect(await diskSnapshot()).toBe(before);
  });

  it("ignores a command not signed by the server's key", async () => {
    const before = await diskSnapshot();
    const id = await sendUpdate(signManifest(published, [fixture.key]), generateKeyPair());
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await fixture.events()).some((e) => e.report?.command === id)).toBe(false);
    expect(await diskSnapshot()).toBe(before);
  });

  it("refuses a commit without a valid OSTree signature, and prunes what it fetched", async () => {
    const unsigned = await fixture.publishVersion(3, { publish: false });
    const before = await diskSnapshot();
    const id = await sendUpdate(signManifest({ ...published, commit: unsigned, version: "3", sequence: 3, deltas: [] }, [fixture.key]));
    await until(async () => ((await fixture.device()).state === "failed" ? true : null), "the failed report");
    const report = (await fixture.events()).find((e) => e.report?.command === id && e.report.state === "failed")!.report;
    expect(report.error).toMatch(/refusing 3 .*signature/);
    const after = (await diskSnapshot()).split("\n");
    expect(after.slice(0, -1).join("\n")).toBe(before.split("\n").slice(0, -1).join("\n"));
    expect(after.at(-1)).toBe("failed");
    await expect(readFile(objectPath(join(fixture.disk.sysroot, "ostree", "repo"), unsigned, "commit"))).rejects.toThrow(/ENOENT/);
  });

  it("remembers the highest sequence whose commit it verified, across a restart, and refuses anything lower", async () => {
    // The previous test's manifest (sequence 3) named a commit the image key never signed: it raised nothing.
    expect(JSON.parse(await readFile(stateFilePath(fixture.settings.stateDir), "utf8")).acceptedSequences).toBeUndefined();
    await fixture.publishVersion(4);
    const v4 = JSON.parse(await readFile(join(fixture.repo, manifestPath("stable", REF)), "utf8"));
    await sendUpdate(v4);
    // Staged, then (immediate strategy) rebooting: either way v4 is the pending deployment.
    await until(async () => ((await fixture.device()).pending?.version === "4" ? true : null), "v4 to be staged");
    expect(JSON.parse(await readFile(stateFilePath(fixture.settings.stateDir), "utf8")).acceptedSequences).toEqual({ [REF]: 4 });
    await fixture.stopAgent();
    await fixture.startAgent();
    const before = await diskSnapshot();
    const id = await sendUpdate(signManifest({ ...published, issued: new Date().toISOString() }, [fixture.key]));
    expect(await refusalReported(id)).toMatch(/manifest sequence 2 is older than the highest sequence this device accepted for the ref, 4/);
    expect(await diskSnapshot()).toBe(before);
  });
});
