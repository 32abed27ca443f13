import { copyFile, readFile, readdir, writeFile } from "node:fs/promises";
import { anyOf } from "../../../shared/trust/signers.ts";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { initRepo, objectPath, readCommitObject, resolveRef, setRef } from "../../../shared/ostree/repo.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { verifyCommit } from "../../../shared/verify/commit.ts";
import { DeltaFileMismatchError, verifyDeltaFile } from "../../../shared/verify/delta-file.ts";
import { publish } from "../../../server/publish/publish.ts";
import { checkPublishedRepo } from "../../helpers/repo-consistency.ts";
import { commitSyntheticImage } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const REF = "test/bookworm/test-machine/test-image";
const key = generateKeyPair();
let dir: string;
let repo: string;
const commits: string[] = [];

async function publishRef(extra: Partial<Parameters<typeof publish>[0]> = {}) {
  return publish({ repo, ref: REF, key, channel: "stable", deltaDepth: 3, expiresInSeconds: 86400, log: silentLogger(), ...extra });
}

beforeAll(async () => {
  dir = await makeTempDir("publish");
  repo = join(dir, "repo");
  await initRepo(repo, "archive");
});
afterAll(async () => removeTree(dir));

describe("publish on synthetic images with the real ostree", () => {
  it("publishes v1 with a from-scratch delta, a signed commit, a signed summary and a verifying manifest", async () => {
    commits.push(await commitSyntheticImage(repo, REF, dir, { version: "1", sequence: 1, payloadBytes: 100_000 }));
    const result = await publishRef();
    expect(result.deltas.map((d) => d.from)).toEqual([null]);
    const manifest = await checkPublishedRepo(repo, REF, key.publicKey);
    expect(manifest).toMatchObject({ commit: commits[0], version: "1", sequence: 1, architecture: "amd64", downgrade: false });
  });

  it("generates deltas from the previous K versions and from scratch", async () => {
    for (const version of [2, 3, 4, 5]) {
      commits.push(await commitSyntheticImage(repo, REF, dir, { version: String(version), sequence: version, payloadBytes: 100_000, payloadSeed: `v${version}` }));
      await publishRef();
    }
    const manifest = await checkPublishedRepo(repo, REF, key.publicKey);
    expect(manifest.version).toBe("5");
    expect(manifest.deltas.map((d) => d.fromVersion)).toEqual(["4", "3", "2", null]);
    expect(manifest.deltas.map((d) => d.from)).toEqual([commits[3], commits[2], commits[1], null]);
  });

  it("puts every delta where ostree itself finds it", async () => {
    const listed = (await execa("ostree", ["static-delta", "list", `--repo=${repo}`])).stdout.split("\n").filter(Boolean).sort();
    const expected = [null, ...commits.slice(1, 4)].map((from) => (from === null ? commits[4]! : `${from}-${commits[4]}`));
    expect(listed).toEqual(expect.arrayContaining(expected));
  });

  it("is idempotent: a rerun regenerates nothing and still verifies", async () => {
    const result = await publishRef();
    expect(result.deltas.every((d) => !d.generated)).toBe(true);
    await checkPublishedRepo(repo, REF, key.publicKey);
  });

  it("writes deltas ostree applies offline, carrying the commit signature our verifier accepts", async () => {
    const manifest = await checkPublishedRepo(repo, REF, key.publicKey);
    const target = join(dir, "device-repo");
    await initRepo(target, "bare-user");
    const scratch = manifest.deltas.find((d) => d.from === null)!;
    await execa("ostree", ["static-delta", "apply-offline", `--repo=${target}`, join(repo, scratch.files[0]!.path)]);
    const commitObject = await readFile(objectPath(target, manifest.commit, "commit"));
    const detached = await readFile(objectPath(target, manifest.commit, "commitmeta"));
    expect(verifyCommit({ checksum: manifest.commit, commitObject, detachedMetadata: detached }, anyOf([key.publicKey]))).toHaveLength(64);
    await execa("ostree", ["fsck", `--repo=${target}`]);
  });

  it("detects a tampered delta part through its manifest sha256", async () => {
    const manifest = await checkPublishedRepo(repo, REF, key.publicKey);
    const part = manifest.deltas[0]!.files.at(-1)!;
    const copy = join(dir, "tampered-part");
    await copyFile(join(repo, part.path), copy);
    const bytes = await readFile(copy);
    bytes[bytes.length >> 1]! ^= 0xff;
    await writeFile(copy, bytes);
    await expect(verifyDeltaFile(copy, part)).rejects.toThrow(DeltaFileMismatchError);
    await expect(verifyDeltaFile(copy, part)).rejects.toThrow(/the sha256 is [0-9a-f]{64}, the signed manifest says/);
  });

  it("detects a tampered object when a client pulls the commit", async () => {
    const copy = join(dir, "tampered-repo");
    await execa("cp", ["-a", repo, copy]);
    const objects = join(copy, "objects");
    const fileObjects = [];
    for (const prefix of await readdir(objects)) for (const name of await readdir(join(objects, prefix))) if (name.endsWith(".filez")) fileObjects.push(join(objects, prefix, name));
    for (const path of fileObjects) {
      const bytes = await readFile(path);
      bytes[bytes.length - 1]! ^= 0x01;
      await writeFile(path, bytes);
    }
    const target = join(dir, "pull-target");
    await initRepo(target, "bare-user");
    const pull = await execa("ostree", ["pull-local", "--untrusted", `--repo=${target}`, copy, commits.at(-1)!], { reject: false });
    expect(pull.exitCode).not.toBe(0);
    expect(pull.stderr).toMatch(/[Cc]orrupted|checksum|invalid/);
  });

  it("refuses to publish a lower sequence than the channel has, unless it is a signed downgrade", async () => {
    await setRef(repo, REF, commits[2]!);
    await expect(publishRef()).rejects.toThrow(/version 5 \(sequence 5\); version 3 \(sequence 3\) would be a downgrade: pass --downgrade/);
    expect((await checkPublishedRepo(repo, REF, key.publicKey)).version).toBe("5");
    const result = await publishRef({ downgrade: true });
    expect(result.version).toBe("3");
    const manifest = await checkPublishedRepo(repo, REF, key.publicKey);
    expect(manifest).toMatchObject({ version: "3", downgrade: true });
    // Version 4 is above the channel's manifest now, but below the 5 that devices already took.
    await setRef(repo, REF, commits[3]!);
    await expect(publishRef()).rejects.toThrow(/stable has published \S+ up to sequence 5; version 4 \(sequence 4\) would be a downgrade/);
    expect((await checkPublishedRepo(repo, REF, key.publicKey)).version).toBe("3");
    await publishRef({ downgrade: true });
    expect(await checkPublishedRepo(repo, REF, key.publicKey)).toMatchObject({ version: "4", downgrade: true });
    await setRef(repo, REF, commits[4]!);
    expect((await publishRef()).version).toBe("5");
    expect(await checkPublishedRepo(repo, REF, key.publicKey)).toMatchObject({ version: "5", downgrade: false });
  });

  it("says which ref is missing", async () => {
    await expect(publishRef({ ref: "no/such/ref" })).rejects.toThrow(/ref 'no\/such\/ref' does not exist/);
  });

  it("leaves the commit object untouched: the signature lives in detached metadata", async () => {
    const head = (await resolveRef(repo, REF))!;
    const bytes = await readCommitObject(repo, head);
    expect(verifyCommit({ checksum: head, commitObject: bytes, detachedMetadata: await readFile(objectPath(repo, head, "commitmeta")) }, anyOf([key.publicKey]))).toBeTruthy();
  });
});
