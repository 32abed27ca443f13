/**
 * A publish killed with SIGKILL at any point must leave the repo serving the previous
 * consistent state, and a rerun must complete it (the atomicity requirement).
 */
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { formatSecretKey } from "../../../shared/sign/keys.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { checkPublishedRepo } from "../../helpers/repo-consistency.ts";
import { commitSyntheticImage } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const REF = "test/bookworm/test-machine/test-image";
const key = generateKeyPair();
let dir: string;
let keyFile: string;

function publishArgs(repo: string): string[] {
  return [SERVER_CLI, "publish", "--repo", repo, "--ref", REF, "--key", keyFile, "--delta-depth", "2"];
}

/** Starts a publish and SIGKILLs it when it logs `event` (or after `afterMs`); resolves once it is dead. */
function publishAndKill(repo: string, trigger: { event?: string; afterMs?: number }): Promise<{ killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, publishArgs(repo), { stdio: ["ignore", "ignore", "pipe"] });
    let killed = false;
    const kill = () => {
      if (!killed) child.kill("SIGKILL");
      killed = true;
    };
    if (trigger.afterMs !== undefined) setTimeout(kill, trigger.afterMs);
    createInterface({ input: child.stderr! }).on("line", (line) => {
      if (trigger.event && line.includes(`"event":"${trigger.event}"`)) kill();
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => resolve({ killed: killed && signal === "SIGKILL" }));
  });
}

/** A repo with v1 published and v2 composed (big enough that each publish step takes a while). */
async function repoWithPendingV2(name: string): Promise<string> {
  const repo = join(dir, name);
  await initRepo(repo, "archive");
  await commitSyntheticImage(repo, REF, dir, { version: "1", sequence: 1, payloadBytes: 1_500_000, payloadSeed: `${name}-1` });
  await execa(process.execPath, publishArgs(repo));
  await commitSyntheticImage(repo, REF, dir, { version: "2", sequence: 2, payloadBytes: 1_500_000, payloadSeed: `${name}-2` });
  return repo;
}

beforeAll(async () => {
  dir = await makeTempDir("publish-kill");
  keyFile = join(dir, "ed25519.secret");
  await writeFile(keyFile, formatSecretKey(key), { mode: 0o600 });
});
afterAll(async () => removeTree(dir));

describe("publish killed with SIGKILL", () => {
  it("right after signing the commit: v1 is still served intact, and a rerun publishes v2", async () => {
    const repo = await repoWithPendingV2("after-sign");
    expect((await publishAndKill(repo, { event: "publish.commit.signed" })).killed).toBe(true);
    expect((await checkPublishedRepo(repo, REF, key.publicKey)).version).toBe("1");
    await execa(process.execPath, publishArgs(repo));
    expect((await checkPublishedRepo(repo, REF, key.publicKey)).version).toBe("2");
  });

  it.each(["publish.delta.ready", "publish.summary.signed"])("right after %s: the repo is consistent, and a rerun publishes v2", async (event) => {
    const repo = await repoWithPendingV2(event);
    expect((await publishAndKill(repo, { event })).killed).toBe(true);
    expect(["1", "2"]).toContain((await checkPublishedRepo(repo, REF, key.publicKey)).version);
    await execa(process.execPath, publishArgs(repo));
    const manifest = await checkPublishedRepo(repo, REF, key.publicKey);
    expect(manifest.version).toBe("2");
    expect(manifest.deltas.map((d) => d.fromVersion)).toEqual(["1", null]);
  });

  it.each([400, 800, 1200, 2000])("after %i ms: the repo is consistent, and a rerun publishes v2", async (afterMs) => {
    const repo = await repoWithPendingV2(`timed-${afterMs}`);
    await publishAndKill(repo, { afterMs });
    expect(["1", "2"]).toContain((await checkPublishedRepo(repo, REF, key.publicKey)).version);
    await execa(process.execPath, publishArgs(repo));
    expect((await checkPublishedRepo(repo, REF, key.publicKey)).version).toBe("2");
  });
});
