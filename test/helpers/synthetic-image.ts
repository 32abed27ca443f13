/** Small deployable trees committed with apt-ostree's image metadata, for tests that need seconds, not minutes. */
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { encodeImageCommitMetadata, type PackageEntry } from "../../shared/image/commit-metadata.ts";
import { silentLogger } from "../../shared/log.ts";
import { commitTree } from "../../shared/ostree/commit.ts";
import { initRepo } from "../../shared/ostree/repo.ts";
import type { Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { formatSecretKey } from "../../shared/sign/keys.ts";
import { publish } from "../../server/publish/publish.ts";

export const KERNEL = "6.1.0-test-amd64";

export interface SyntheticImage {
  version: string;
  sequence: number;
  packages?: PackageEntry[];
  /** Extra files, path -> content. */
  files?: Record<string, string | Buffer>;
  /** Bytes of pseudo-random payload (deterministic per seed), to give deltas some weight. */
  payloadBytes?: number;
  payloadSeed?: string;
  architecture?: string;
}

export function pseudoRandom(bytes: number, seed: string): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  for (let i = 0; total < bytes; i++) {
    const chunk = createHash("sha512").update(`${seed}:${i}`).digest();
    chunks.push(chunk);
    total += chunk.length;
  }
  return Buffer.concat(chunks).subarray(0, bytes);
}

/** The smallest tree `ostree admin deploy` accepts (DESIGN.md 5.3), plus what the image asks for. */
export async function writeSyntheticTree(dir: string, image: SyntheticImage): Promise<void> {
  const files: Record<string, string | Buffer> = {
    [`usr/lib/modules/${KERNEL}/vmlinuz`]: "not really a kernel\n",
    [`usr/lib/modules/${KERNEL}/initramfs.img`]: "not really an initramfs\n",
    "usr/lib/os-release": 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="apt-ostree test image"\n',
    "usr/etc/hostname": "test\n",
    "usr/etc/motd": `version ${image.version}\n`,
    "usr/bin/app": `#!/bin/sh\necho app ${image.version}\n`,
    ...(image.payloadBytes ? { "usr/share/payload.bin": pseudoRandom(image.payloadBytes, image.payloadSeed ?? "payload") } : {}),
    ...image.files,
  };
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  for (const empty of ["var", "boot", "sysroot", "dev", "proc", "sys", "run", "tmp"]) await mkdir(join(dir, empty), { recursive: true });
}

export async function commitSyntheticImage(repo: string, ref: string, workDir: string, image: SyntheticImage): Promise<string> {
  const tree = join(workDir, `tree-${image.version}`);
  await writeSyntheticTree(tree, image);
  return commitTree({
    repo,
    tree,
    branch: ref,
    subject: `synthetic ${image.version}`,
    timestamp: 1735689600 + image.sequence,
    ...encodeImageCommitMetadata({
      version: image.version,
      sequence: image.sequence,
      architecture: image.architecture ?? "amd64",
      machine: "test-machine",
      image: "test-image",
      recipeDigest: "0".repeat(64),
      sourceDateEpoch: 1735689600,
      kernel: KERNEL,
      kernelArgs: [],
      packages: image.packages ?? [{ name: "app", version: image.version, architecture: "all" }],
    }),
  });
}

/**
 * A server's archive repo at `dir/repo`, with its signing key beside it in `dir/server.secret`
 * (what `serve --key` and testServerSettings' `signingKey` read).
 */
export async function initServerRepo(dir: string, key: Ed25519KeyPair): Promise<string> {
  const repo = join(dir, "repo");
  await initRepo(repo, "archive");
  await writeFile(join(dir, "server.secret"), formatSecretKey(key), { mode: 0o600 });
  return repo;
}

/** Commits synthetic version N (sequence N) on `ref` and publishes the stable channel with a delta from the previous version. */
export async function publishSyntheticVersion(repo: string, ref: string, workDir: string, key: Ed25519KeyPair, version: number): Promise<string> {
  const commit = await commitSyntheticImage(repo, ref, workDir, { version: String(version), sequence: version });
  await publish({ repo, ref, key, channel: "stable", deltaDepth: 1, expiresInSeconds: 86400, log: silentLogger() });
  return commit;
}
