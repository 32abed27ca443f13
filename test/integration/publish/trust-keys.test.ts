/**
 * The operator's key commands (docs/trust.md, "Operator commands"), run as the real CLI: a root
 * with three holders and threshold 2, a rotation that waits for a second holder, a revocation,
 * and publish signing each document with its role's key and copying the roots to the repo.
 */
import { mkdtemp, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initRepo, readCommitObject } from "../../../shared/ostree/repo.ts";
import { readFile as readRepoFile } from "node:fs/promises";
import { verifyCommit } from "../../../shared/verify/commit.ts";
import { verifySignedManifest } from "../../../shared/verify/manifest.ts";
import { signersFor, verifyNextRoot, verifyRootSelf, type SignedRoot } from "../../../shared/trust/root.ts";
import { checkCommandKey } from "../../../server/keys/command-key.ts";
import { readSecretKeyFile } from "../../../shared/sign/keys.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { signCommit } from "../../../server/publish/sign-commit.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { readOstreeSignatures } from "../../../shared/sign/ostree-signature.ts";
import { commitSyntheticImage } from "../../helpers/synthetic-image.ts";
import { VECTORS } from "../../helpers/fixtures.ts";
import { opensslAcceptsCommit } from "../../helpers/openssl-ostree-verify.ts";

const REF = "test/trust/amd64";
let dir: string;
let trust: string;
let repo: string;

const cli = (...args: string[]) => execa(process.execPath, [SERVER_CLI, "keys", ...args], { reject: false });
const json = (stdout: string) => JSON.parse(stdout.trim().split("\n").at(-1)!);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trust-keys-"));
  trust = join(dir, "trust");
  repo = join(dir, "repo");
  await initRepo(repo, "archive");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function holderAway(id: string): Promise<string> {
  const name = (await readdir(join(trust, "keys"))).find((n) => n.startsWith(`root-${id.slice(0, 16)}`) && n.endsWith(".secret"))!;
  const away = join(dir, name);
  await rename(join(trust, "keys", name), away);
  return away;
}

describe("apt-ostree-server keys", () => {
  let initial: { keys: Array<{ role: string; keyid: string; secret: string }> };

  it("init-root writes root version 1, a key per role and three root keys, secrets 0600", async () => {
    const result = await cli("init-root", "--out", trust, "--root-keys", "3", "--threshold", "root=2", "--json");
    expect(result.exitCode, result.stderr).toBe(0);
    initial = json(result.stdout);
    expect(initial.keys.map((k) => k.role).sort()).toEqual(["command", "image", "release", "root", "root", "root"]);
    for (const key of initial.keys) expect((await stat(key.secret)).mode & 0o777).toBe(0o600);
    const root = verifyRootSelf(await readFile(join(trust, "root.json")), "root.json").root;
    expect(root.version).toBe(1);
    expect(root.roles.root.threshold).toBe(2);
    expect((await cli("init-root", "--out", trust)).stderr).toMatch(/already holds a root/);
  });

  it("show prints each role's keys and threshold", async () => {
    const result = await cli("show", "--trust", trust);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/Root version 1, expires/);
    expect(result.stdout).toMatch(/root +threshold 2 of \w{16}, \w{16}, \w{16}/);
  });

  it("rotate with one root holder present waits in pending/; sign-root by a second holder completes and publishes it", async () => {
    const [first, second, third] = initial.keys.filter((k) => k.role === "root").map((k) => k.keyid);
    const secondKey = await holderAway(second!);
    await holderAway(third!);
    void first;
    const rotated = await cli("rotate", "--trust", trust, "--role", "command", "--repo", repo, "--json");
    expect(rotated.exitCode, rotated.stderr).toBe(0);
    const pending = json(rotated.stdout);
    expect(pending).toMatchObject({ version: 2, complete: false, missing: { old: 1, new: 1 } });
    expect(await readdir(join(repo, "roots")).catch(() => [])).toEqual([]);
    const signed = await cli("sign-root", "--root", pending.file, "--key", secondKey, "--trust", trust, "--repo", repo, "--json");
    expect(signed.exitCode, signed.stderr).toBe(0);
    expect(json(signed.stdout)).toMatchObject({ version: 2, complete: true, published: [1, 2] });
    const v1 = verifyRootSelf(await readFile(join(repo, "roots", "1.root.json")), "v1").root;
    const v2 = verifyNextRoot(v1, await readFile(join(repo, "roots", "2.root.json")), "v2").root;
    const oldCommand = initial.keys.find((k) => k.role === "command")!.keyid;
    expect(v2.revoked[oldCommand]).toBeDefined();
    expect(v2.roles.command.keyids).toHaveLength(1);
  });

  it("rotate refuses to lower a threshold it was not asked to lower", async () => {
    const result = await cli("rotate", "--trust", trust, "--role", "root");
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/the root role needs 2 signatures; pass --keys 2/);
    expect(await readdir(join(trust, "roots"))).toEqual(["1.root.json", "2.root.json"]);
  });

  it("sign-root refuses a key that holds no root role", async () => {
    const image = initial.keys.find((k) => k.role === "image")!;
    const v2 = join(trust, "roots", "2.root.json");
    const result = await cli("sign-root", "--root", v2, "--key", image.secret);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/holds no root role in version 2/);
  });

  it("revoke refuses a role's last key, and names what to do", async () => {
    const image = initial.keys.find((k) => k.role === "image")!.keyid;
    const result = await cli("revoke", image.slice(0, 12), "--trust", trust);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toMatch(/last image key: rotate the image role/);
  });

  it("publish --trust signs the commit with the image key and the manifest with the release key, and serves the roots", async () => {
    const commit = await commitSyntheticImage(repo, REF, dir, { version: "1", sequence: 1 });
    // Signatures a retired key left on the commit are dropped when the current image key signs it.
    const strangers = Array.from({ length: 9 }, generateKeyPair);
    await signCommit(repo, commit, strangers);
    const result = await execa(process.execPath, [SERVER_CLI, "publish", "--repo", repo, "--ref", REF, "--trust", trust, "--json"], { reject: false });
    expect(result.exitCode, result.stderr).toBe(0);
    const root = verifyRootSelf(await readFile(join(trust, "root.json")), "root").root;
    const manifestPath = join(repo, json(result.stdout).manifest);
    const manifestText = await readFile(manifestPath, "utf8");
    const manifest = verifySignedManifest(manifestText, { signers: signersFor(root, "release"), now: new Date(), architecture: "amd64" });
    const commitObject = await readCommitObject(repo, manifest.commit);
    const detached = await readRepoFile(join(repo, "objects", manifest.commit.slice(0, 2), `${manifest.commit.slice(2)}.commitmeta`));
    expect(verifyCommit({ checksum: manifest.commit, commitObject, detachedMetadata: detached }, signersFor(root, "image"))).toBe(root.roles.image.keyids[0]);
    expect(readOstreeSignatures(detached)).toHaveLength(1);
    expect(() => verifySignedManifest(manifestText, { signers: signersFor(root, "command"), now: new Date(), architecture: "amd64" })).toThrow(expect.objectContaining({ code: "E_KEY_WRONG_ROLE" }));
    // Held out: OpenSSL, given what stock ostree shows of the commit, agrees (helpers/openssl-ostree-verify.ts).
    const publicKey = (role: "image" | "release") => Buffer.from(root.keys[root.roles[role].keyids[0]!]!.public, "base64");
    expect(await opensslAcceptsCommit(repo, manifest.commit, publicKey("image"))).toBe(true);
    expect(await opensslAcceptsCommit(repo, manifest.commit, publicKey("release"))).toBe(false);
    expect(await opensslAcceptsCommit(repo, manifest.commit, strangers[0]!.publicKey)).toBe(false);
  });

  it("the hold-out check itself accepts upstream OSTree's signature by key A and refuses key B", async () => {
    const vectors = VECTORS;
    const commit = (await readFile(join(vectors, "commit.txt"), "utf8")).trim();
    const key = async (name: string) => Buffer.from((await readFile(join(vectors, `${name}.pub`), "utf8")).trim(), "base64");
    expect(await opensslAcceptsCommit(join(vectors, "repo"), commit, await key("key-a"))).toBe(true);
    expect(await opensslAcceptsCommit(join(vectors, "repo"), commit, await key("key-b"))).toBe(false);
  });

  it("serve's command key must hold the command role of the repo's newest root", async () => {
    const revoked = initial.keys.find((k) => k.role === "command")!;
    await expect(checkCommandKey(repo, await readSecretKeyFile(revoked.secret).catch(() => readSecretKeyFile(join(trust, "keys", "revoked", revoked.secret.split("/").at(-1)!))))).rejects.toThrow(/was revoked in root version 2/);
    const image = initial.keys.find((k) => k.role === "image")!;
    await expect(checkCommandKey(repo, await readSecretKeyFile(image.secret))).rejects.toThrow(/holds the image role/);
    const current: SignedRoot = JSON.parse(await readFile(join(trust, "root.json"), "utf8"));
    const commandFile = (await readdir(join(trust, "keys"))).find((n) => n.startsWith(`command-${current.root.roles.command.keyids[0]!.slice(0, 16)}`) && n.endsWith(".secret"))!;
    await expect(checkCommandKey(repo, await readSecretKeyFile(join(trust, "keys", commandFile)))).resolves.toBeUndefined();
  });
});
