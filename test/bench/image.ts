/**
 * The image benchmark (`npm run bench -- image`):
 *  1. compose overhead: our compose against plain mmdebstrap + `ostree commit` of the same
 *     package set, both with a warm .deb cache (target < 1.2x);
 *  2. update size: the static delta for appliance-minimal -> appliance-minimal-next (curl added)
 *     against the full image as tar.zst -19 and against the sum of the changed files;
 *  3. publish time, dominated by the from-scratch delta.
 * Work happens under $APT_OSTREE_CACHE/bench, recreated on each run.
 */
import { mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { silentLogger } from "../../shared/log.ts";
import { initRepo } from "../../shared/ostree/repo.ts";
import { generateKeyPair } from "../../shared/sign/ed25519.ts";
import { DEFAULT_RECIPES_DIR } from "../../server/cli/defaults.ts";
import { formatBytes } from "../../server/cli/compose.ts";
import { aptCachePaths, defaultCacheDir } from "../../server/compose/cache.ts";
import { compose } from "../../server/compose/compose.ts";
import { loadRecipe } from "../../server/compose/recipe.ts";
import { mmdebstrapArgs } from "../../server/compose/rootfs.ts";
import { publish } from "../../server/publish/publish.ts";
import { timed } from "./timed.ts";

const MACHINE = "qemu-amd64";
const cache = defaultCacheDir();
const work = join(cache, "bench");
const log = silentLogger();
const progress = { phase() {}, packages() {}, done() {} };

async function composeInto(repo: string, image: string) {
  return compose({ recipesDir: DEFAULT_RECIPES_DIR, image, machine: MACHINE, repo, cacheDir: cache, indexMaxAgeSeconds: 86400, log, progress });
}

/** The baseline: the same mmdebstrap call (same package set, same caches), then a plain ostree commit. */
async function plainMmdebstrapAndCommit(repo: string): Promise<void> {
  const recipe = await loadRecipe(DEFAULT_RECIPES_DIR, "appliance-minimal", MACHINE);
  const caches = await aptCachePaths(cache, recipe);
  const root = join(work, "plain-rootfs");
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  await execa("unshare", ["--mount", "--propagation", "private", "mmdebstrap", ...mmdebstrapArgs({ recipe, cache: caches, target: root })], {
    env: { SOURCE_DATE_EPOCH: String(recipe.sourceDateEpoch) },
  });
  await execa("sh", ["-c", `rm -rf "${root}"/dev/* && mv "${root}/etc" "${root}/usr/etc"`]);
  await initRepo(repo, "archive");
  await execa("ostree", ["commit", `--repo=${repo}`, "--branch=plain", `--tree=dir=${root}`]);
  await rm(root, { recursive: true, force: true });
}

export async function benchImage(say: (line?: string) => void): Promise<void> {
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const repo = join(work, "repo");
  say(`ostree ${(await execa("ostree", ["--version"])).stdout.match(/Version: '?([\d.]+)/)?.[1]}; warm .deb cache for every compose.`);
  say();

  // Warm the cache first so neither side of the comparison downloads.
  await composeInto(join(work, "warmup"), "appliance-minimal");
  await rm(join(work, "warmup"), { recursive: true, force: true });

  const [v1, oursSeconds] = await timed(() => composeInto(repo, "appliance-minimal"));
  const [, plainSeconds] = await timed(() => plainMmdebstrapAndCommit(join(work, "plain-repo")));
  say("### Compose overhead");
  say();
  say("| | seconds |");
  say("| --- | --- |");
  say(`| apt-ostree compose (resolve, mmdebstrap, customize, depmod + dracut, layout, commit) | ${oursSeconds.toFixed(1)} |`);
  say(`| plain mmdebstrap (same packages, kernel postinst initramfs) + ostree commit | ${plainSeconds.toFixed(1)} |`);
  say(`| ratio | **${(oursSeconds / plainSeconds).toFixed(2)}x** (target < 1.2x) |`);
  say();

  const key = generateKeyPair();
  const [, publish1Seconds] = await timed(() => publish({ repo, ref: v1.ref, key, channel: "stable", deltaDepth: 3, expiresInSeconds: 86400, log }));
  const [v2] = await timed(() => composeInto(repo, "appliance-minimal-next"));
  const [published, publish2Seconds] = await timed(() => publish({ repo, ref: v2.ref, key, channel: "stable", deltaDepth: 3, expiresInSeconds: 86400, log }));
  const upgrade = published.deltas.find((d) => d.from === v1.commit)!;
  const scratch = published.deltas.find((d) => d.from === null)!;

  const checkout = join(work, "checkout-v2");
  await execa("ostree", ["checkout", `--repo=${repo}`, v2.commit, checkout]);
  const tarball = join(work, "v2.tar.zst");
  await execa("sh", ["-c", `tar -C "${checkout}" --numeric-owner -cf - . | zstd -19 -T0 -q -o "${tarball}"`]);
  const zstdSize = (await stat(tarball)).size;
  const diff = (await execa("ostree", ["diff", `--repo=${repo}`, v1.commit, v2.commit])).stdout.split("\n");
  let changedBytes = 0;
  let changedFiles = 0;
  for (const line of diff) {
    const match = /^([AM])\s+(\/.*)$/.exec(line);
    if (!match) continue;
    const info = await stat(join(checkout, match[2]!)).catch(() => null);
    if (info?.isFile()) {
      changedBytes += info.size;
      changedFiles++;
    }
  }
  await execa("chattr", ["-R", "-i", checkout], { reject: false });
  await rm(checkout, { recursive: true, force: true });

  say("### Update size: appliance-minimal 1 -> 2 (curl and its libraries added)");
  say();
  say("| | bytes | |");
  say("| --- | --- | --- |");
  say(`| static delta 1 -> 2 (${upgrade.files.length} files) | ${upgrade.size} | ${formatBytes(upgrade.size)} |`);
  say(`| full image v2 as tar.zst -19 | ${zstdSize} | ${formatBytes(zstdSize)}; delta is ${((upgrade.size / zstdSize) * 100).toFixed(1)}% of it |`);
  say(`| sum of the ${changedFiles} added or modified files, uncompressed | ${changedBytes} | ${formatBytes(changedBytes)}; delta is ${((upgrade.size / changedBytes) * 100).toFixed(1)}% of it |`);
  say(`| from-scratch static delta v2 | ${scratch.size} | ${formatBytes(scratch.size)} |`);
  say(`| image v2: unpacked / in the archive repo | ${v2.sizes!.unpacked} / ${v2.sizes!.compressed} | ${formatBytes(v2.sizes!.unpacked)} / ${formatBytes(v2.sizes!.compressed)} |`);
  say();
  say("### Publish time");
  say();
  say(`- publish v1 (sign, from-scratch delta, summary, manifest): ${publish1Seconds.toFixed(1)} s`);
  say(`- publish v2 (delta from v1 and from scratch, generated concurrently): ${publish2Seconds.toFixed(1)} s`);
}
