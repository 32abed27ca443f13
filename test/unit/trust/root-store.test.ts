import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair, keyId } from "../../../shared/sign/ed25519.ts";
import { formatPublicKey } from "../../../shared/sign/keys.ts";
import { serializeSignedRoot, type Root } from "../../../shared/trust/root.ts";
import { expiryAfterDays, firstRoot, rotateRole, signRoot } from "../../../shared/trust/root-edit.ts";
import { MAX_ROOT_STEPS, readStoredNewest, RootStore, storedChainPath } from "../../../device/trust/root-store.ts";

const NOW = new Date("2026-12-06T12:00:00Z");
const LATER = expiryAfterDays(NOW, 365);
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "root-store-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A root chain of `length` versions, each rotating the image key; served[v] is version v's file. */
function chain(length: number) {
  const rootKey = generateKeyPair();
  const imageKeys = [generateKeyPair()];
  let root: Root = firstRoot({ root: [rootKey.publicKey], image: [imageKeys[0]!.publicKey], release: [generateKeyPair().publicKey], command: [generateKeyPair().publicKey] }, {}, LATER);
  const served = new Map<number, string>([[1, serializeSignedRoot(signRoot(root, [rootKey]))]]);
  for (let version = 2; version <= length; version++) {
    imageKeys.push(generateKeyPair());
    root = rotateRole(root, "image", [imageKeys.at(-1)!.publicKey], 1, LATER);
    served.set(version, serializeSignedRoot(signRoot(root, [rootKey])));
  }
  return { rootKey, imageKeys, served };
}

async function open(served: Map<number, string>, fetched: number[] = []) {
  await writeFile(join(dir, "shipped.json"), served.get(1)!);
  return RootStore.open({
    shippedRoot: join(dir, "shipped.json"),
    trustDir: join(dir, "trust"),
    fetchRoot: async (version) => {
      fetched.push(version);
      const text = served.get(version);
      return text === undefined ? null : new Uint8Array(Buffer.from(text));
    },
    ostreeKeysFile: join(dir, "trusted.ed25519.d", "apt-ostree-image"),
    now: () => NOW,
    log: silentLogger(),
  });
}

describe("the device's root chain", () => {
  it("walks to the newest version, persists it, and writes the image keys for stock ostree", async () => {
    const { served, imageKeys } = chain(4);
    const fetched: number[] = [];
    const store = await open(served, fetched);
    expect(await readFile(join(dir, "trusted.ed25519.d", "apt-ostree-image"), "utf8")).toBe(formatPublicKey(imageKeys[0]!.publicKey));
    expect(await store.refresh()).toBe(true);
    expect(store.rootVersion).toBe(4);
    expect(fetched).toEqual([2, 3, 4, 5]);
    expect([...store.signers("image").keys.keys()]).toEqual([keyId(imageKeys[3]!.publicKey)]);
    expect(await readFile(join(dir, "trusted.ed25519.d", "apt-ostree-image"), "utf8")).toBe(formatPublicKey(imageKeys[3]!.publicKey));
    expect(await store.refresh()).toBe(false);
    const reopened = await open(new Map([[1, served.get(1)!]]));
    expect(reopened.rootVersion).toBe(4);
  });

  it("keeps every version accepted before a refused one, and the refused one changes nothing", async () => {
    const { served } = chain(3);
    served.set(4, served.get(2)!);
    const store = await open(served);
    await expect(store.refresh()).rejects.toMatchObject({ code: "E_ROOT_VERSION" });
    expect(store.rootVersion).toBe(3);
    expect((await readStoredNewest(join(dir, "trust")))!.root.version).toBe(3);
  });

  it("takes at most MAX_ROOT_STEPS versions per walk and goes on at the next", async () => {
    const { served } = chain(MAX_ROOT_STEPS + 3);
    const store = await open(served);
    await store.refresh();
    expect(store.rootVersion).toBe(MAX_ROOT_STEPS + 1);
    await store.refresh();
    expect(store.rootVersion).toBe(MAX_ROOT_STEPS + 3);
  });

  it("sets aside a corrupt stored root and starts again from the image's", async () => {
    const { served } = chain(2);
    const store = await open(served);
    await store.refresh();
    await writeFile(storedChainPath(join(dir, "trust")), served.get(2)!.slice(0, 100));
    const reopened = await open(served);
    expect(reopened.rootVersion).toBe(1);
    await reopened.refresh();
    expect(reopened.rootVersion).toBe(2);
  });

  it("does not trust a stored root that does not chain to the image's, however new its version", async () => {
    const { served } = chain(2);
    const store = await open(served);
    await store.refresh();
    const stranger = chain(1);
    const forged = JSON.parse(stranger.served.get(1)!);
    const rootKey = stranger.rootKey;
    const { root } = forged;
    const bumped = serializeSignedRoot(signRoot({ ...root, version: 1_000_000 }, [rootKey]));
    await writeFile(storedChainPath(join(dir, "trust")), `${served.get(2)!}${bumped}`);
    const reopened = await open(served);
    expect(reopened.rootVersion).toBe(2);
  });

  it("skips stored versions the image already ships, and verifies the rest from it", async () => {
    const { served } = chain(4);
    const store = await open(served);
    await store.refresh();
    await writeFile(join(dir, "shipped.json"), served.get(3)!);
    const newerImage = await RootStore.open({ shippedRoot: join(dir, "shipped.json"), trustDir: join(dir, "trust"), fetchRoot: async () => null, ostreeKeysFile: null, now: () => NOW, log: silentLogger() });
    expect(newerImage.rootVersion).toBe(4);
  });

  it("refuses every signature once the newest root expired", async () => {
    const rootKey = generateKeyPair();
    const root = firstRoot({ root: [rootKey.publicKey], image: [generateKeyPair().publicKey], release: [generateKeyPair().publicKey], command: [generateKeyPair().publicKey] }, {}, "2026-06-01T00:00:00.000Z");
    const store = await open(new Map([[1, serializeSignedRoot(signRoot(root, [rootKey]))]]));
    expect(() => store.signers("command")).toThrow(expect.objectContaining({ code: "E_ROOT_EXPIRED" }));
  });
});
