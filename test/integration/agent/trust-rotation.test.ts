/**
 * Keys rotated and revoked on the server reach the real agent with no reimage (docs/trust.md):
 * the device ships root version 1, the operator rotates the command key and then the image key
 * with `keys rotate`, and the agent walks the new root versions from the repo before it believes
 * a command. A command signed by the revoked command key is refused by name; a release whose
 * commit only the revoked image key signed is refused and reported; a root version signed by a
 * stranger is refused and changes nothing on disk.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readStoredNewest, storedChainPath } from "../../../device/trust/root-store.ts";
import { trustDir } from "../../../device/trust/load.ts";
import { publish } from "../../../server/publish/publish.ts";
import { readTrustDir, secretsFor } from "../../../server/keys/trust-dir.ts";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { formatPublicKey, readSecretKeyFile } from "../../../shared/sign/keys.ts";
import { serializeSignedRoot } from "../../../shared/trust/root.ts";
import { expiryAfterDays, rotateRole, signRoot } from "../../../shared/trust/root-edit.ts";
import { signCommand } from "../../../shared/wire/command.ts";
import { manifestPath } from "../../../shared/wire/manifest.ts";
import { AgentFixture, DEVICE_ID, REF } from "../../helpers/agent-fixture.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();
const { api } = fixture;

async function startAgent(): Promise<void> {
  fixture.keepLogs = true;
  await fixture.startAgent();
  await until(async () => (await fixture.device())?.online === true, "the agent to connect");
}

const logged = (event: string) => fixture.logged(event);
const deviceRootVersion = async () => (await readStoredNewest(trustDir(fixture.settings)))?.root.version;

async function rotate(role: string): Promise<void> {
  const result = await execa(process.execPath, [SERVER_CLI, "keys", "rotate", "--trust", fixture.trustDir!, "--role", role, "--repo", fixture.repo, "--json"]);
  expect(JSON.parse(result.stdout.trim().split("\n").at(-1)!)).toMatchObject({ complete: true });
}

async function rollOut(): Promise<string> {
  const { status, json } = await api("rollouts", { ref: REF, select: { devices: [DEVICE_ID] }, waves: "100%", waveDelay: "0s", waveTimeout: "5m" });
  expect(status, JSON.stringify(json)).toBe(201);
  return json.rollout.id;
}

async function healthyOn(version: string): Promise<void> {
  await fixture.rebootWhenAsked();
  await until(async () => ((await fixture.device())?.state === "healthy" && (await fixture.device()).booted.version === version ? true : null), `v${version} healthy`, 60_000);
}

beforeAll(async () => {
  await fixture.setUp("agent-trust", { trust: true });
  await startAgent();
  await until(async () => (await fixture.device())?.booted?.version === "1", "dev-1 to report v1");
}, 60_000);

afterAll(() => fixture.tearDown());

describe("key rotation and revocation reach the agent through the server", () => {
  let oldCommandSecret: string;

  it("follows a rotation of the command key: the next rollout, signed by the new key, installs", async () => {
    const before = await readTrustDir(fixture.trustDir!);
    // Once the rotation is complete the retired key's files move to keys/revoked/.
    oldCommandSecret = join(fixture.trustDir!, "keys", "revoked", `command-${before.newest.root.roles.command.keyids[0]!.slice(0, 16)}.secret`);
    await rotate("command");
    await fixture.restartServer();
    await until(async () => (await fixture.device())?.online === true, "the agent to reconnect");
    await fixture.publishVersion(2);
    await rollOut();
    await healthyOn("2");
    expect(await deviceRootVersion()).toBe(2);
  }, 120_000);

  it("refuses a command signed by the revoked command key, by name, and reports nothing", async () => {
    const oldKey = await readSecretKeyFile(oldCommandSecret);
    const manifest = JSON.parse(await readFile(join(fixture.repo, manifestPath("stable", REF)), "utf8"));
    const stateBefore = fixture.agent!.agent.state;
    await fixture.agent!.agent.onCommand(signCommand({ type: "reboot", id: "forged-reboot", device: DEVICE_ID, issued: new Date().toISOString() }, [oldKey]));
    await fixture.agent!.agent.onCommand(signCommand({ type: "update", id: "forged-update", device: DEVICE_ID, issued: new Date().toISOString(), manifest }, [oldKey]));
    const rejected = logged("agent.command.rejected");
    expect(rejected.map((l) => l.code)).toEqual(["E_KEY_REVOKED", "E_KEY_REVOKED"]);
    expect(rejected[0]!.reason).toMatch(/command is signed by key \w+, which the root revoked \(root version 2\)/);
    expect(fixture.agent!.agent.state).toEqual(stateBefore);
    expect((await fixture.events()).some((e) => e.report?.command?.startsWith("forged-"))).toBe(false);
  });

  it("follows a rotation of the image key, writes the new key for stock ostree, and refuses a release that only the revoked image key signed", async () => {
    const before = await readTrustDir(fixture.trustDir!);
    const oldImage = secretsFor(before, before.newest.root, "image");
    await rotate("image");
    await fixture.publishVersion(3);
    await rollOut();
    await healthyOn("3");
    expect(await deviceRootVersion()).toBe(3);
    const after = await readTrustDir(fixture.trustDir!);
    const newImage = secretsFor(after, after.newest.root, "image");
    expect(await readFile(fixture.settings.ostreeKeysFile, "utf8")).toBe(newImage.map((k) => formatPublicKey(k.publicKey)).join(""));

    await fixture.publishVersion(4, { publish: false });
    await publish({ repo: fixture.repo, ref: REF, ...(await fixture.publishKeys()), imageKeys: oldImage, channel: "stable", deltaDepth: 2, expiresInSeconds: 86400, log: silentLogger() });
    await rollOut();
    const refusal = await until(async () => (await fixture.events()).find((e) => e.report?.state === "failed")?.report, "v4 to be refused", 60_000);
    expect(refusal.error).toMatch(/refusing 4 .*commit \w+ is signed by key \w+, which the root revoked \(root version 3\)/);
    expect((await fixture.device()).booted.version).toBe("3");
  }, 120_000);

  it("refuses a root version signed by a stranger, and keeps the one it trusts", async () => {
    const trust = await readTrustDir(fixture.trustDir!);
    const stranger = generateKeyPair();
    const forged = rotateRole(trust.newest.root, "command", [stranger.publicKey], 1, expiryAfterDays(new Date(), 30));
    await writeFile(join(fixture.repo, "roots", `${forged.version}.root.json`), serializeSignedRoot(signRoot(forged, [stranger])));
    const storedBefore = await readFile(storedChainPath(trustDir(fixture.settings)), "utf8");
    await fixture.publishVersion(5);
    await rollOut();
    await until(async () => (logged("agent.trust.refresh-failed").length > 0 ? true : null), "the walk to refuse the forged root");
    expect(logged("agent.trust.refresh-failed")[0]).toMatchObject({ code: "E_ROOT_OLD_THRESHOLD" });
    expect(await readFile(storedChainPath(trustDir(fixture.settings)), "utf8")).toBe(storedBefore);
    // The device still updates on the keys it trusts.
    await healthyOn("5");
  }, 120_000);
});
