/**
 * The trust model's cost on the device (issue 19's target: under 20 ms added to command ->
 * staged): the agent's root store walking 10 new root versions (each verified against the one
 * before and persisted with an fsync'd atomic write), then the manifest checked against the
 * release keys and the commit against the image keys. The floor beside it: the bare ed25519
 * verifications those steps need (two per root version, one manifest, one commit).
 */
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { RootStore } from "../../device/trust/root-store.ts";
import { silentLogger } from "../../shared/log.ts";
import { canonicalBytes } from "../../shared/sign/canonical-signature.ts";
import { generateKeyPair, sign, verify } from "../../shared/sign/ed25519.ts";
import { addOstreeSignature } from "../../shared/sign/ostree-signature.ts";
import { serializeSignedRoot, type Root } from "../../shared/trust/root.ts";
import { expiryAfterDays, firstRoot, rotateRole, signRoot } from "../../shared/trust/root-edit.ts";
import { verifyCommit } from "../../shared/verify/commit.ts";
import { verifySignedManifest } from "../../shared/verify/manifest.ts";
import { signManifest, type Manifest } from "../../shared/wire/manifest.ts";
import { makeTempDir, removeTree } from "../helpers/tmp.ts";
import { percentile } from "./stats.ts";

const VERSIONS = 10;
const ROUNDS = 21;

export async function benchTrustChain(say: (line?: string) => void): Promise<void> {
  const rootKey = generateKeyPair();
  const image = generateKeyPair();
  const release = generateKeyPair();
  let root: Root = firstRoot({ root: [rootKey.publicKey], image: [image.publicKey], release: [release.publicKey], command: [generateKeyPair().publicKey] }, {}, expiryAfterDays(new Date(), 365));
  const served = new Map<number, Uint8Array>([[1, Buffer.from(serializeSignedRoot(signRoot(root, [rootKey])))]]);
  for (let version = 2; version <= VERSIONS + 1; version++) {
    root = rotateRole(root, "command", [generateKeyPair().publicKey], 1, expiryAfterDays(new Date(), 365));
    served.set(version, Buffer.from(serializeSignedRoot(signRoot(root, [rootKey]))));
  }
  const commitObject = new Uint8Array(Buffer.alloc(600, 7));
  const checksum = createHash("sha256").update(commitObject).digest("hex");
  const detached = addOstreeSignature(null, commitObject, image);
  const manifest: Manifest = {
    schema: 1, ref: "bench/ref", commit: checksum, version: "2", sequence: 2, architecture: "amd64", channel: "stable",
    issued: new Date().toISOString(), expires: expiryAfterDays(new Date(), 30), downgrade: false,
    deltas: [1, 2, 3].map((n) => ({ from: createHash("sha256").update(`from${n}`).digest("hex"), fromVersion: String(n), size: 1000, files: [{ path: `deltas/x${n}/superblock`, size: 1000, sha256: "a".repeat(64) }] })),
  };
  const signedManifest = JSON.stringify(signManifest(manifest, [release]));

  const chain: number[] = [];
  const floor: number[] = [];
  const dir = await makeTempDir("bench-trust");
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const roundDir = join(dir, String(round));
      await writeFile(`${roundDir}.root.json`, served.get(1)!);
      const started = performance.now();
      const store = await RootStore.open({ shippedRoot: `${roundDir}.root.json`, trustDir: roundDir, fetchRoot: async (v) => served.get(v) ?? null, ostreeKeysFile: null, now: () => new Date(), log: silentLogger() });
      await store.refresh();
      verifySignedManifest(signedManifest, { signers: store.signers("release"), now: new Date(), architecture: "amd64" });
      verifyCommit({ checksum, commitObject, detachedMetadata: detached }, store.signers("image"));
      chain.push(performance.now() - started);

      const bytes = canonicalBytes(manifest);
      const signature = sign(bytes, release.seed);
      const bare = performance.now();
      for (let i = 0; i < 2 * VERSIONS + 1 + 2; i++) verify(signature, bytes, release.publicKey);
      floor.push(performance.now() - bare);
    }
  } finally {
    await removeTree(dir);
  }
  chain.sort((a, b) => a - b);
  floor.sort((a, b) => a - b);
  say(`### Trust chain: root walk of ${VERSIONS} versions, then manifest and commit checks`);
  say();
  say(`In process, ${ROUNDS} rounds (median, p90). The chain includes opening the store (the shipped root verified), each version verified against the one before and written atomically with fsync, and the release and image checks. The floor: the ${2 * VERSIONS + 3} ed25519 verifications alone.`);
  say();
  say("| step | median | p90 | target |");
  say("| --- | --- | --- | --- |");
  say(`| verification chain | ${percentile(chain, 50).toFixed(1)} ms | ${percentile(chain, 90).toFixed(1)} ms | < 20 ms |`);
  say(`| floor: bare ed25519 verifies | ${percentile(floor, 50).toFixed(1)} ms | ${percentile(floor, 90).toFixed(1)} ms | |`);
  say();
}
