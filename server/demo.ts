/**
 * The demo: compose the example appliance, publish it, compose its next release (one package
 * added), publish that, and show what an operator and a device would see: refs, commits,
 * versions, sizes, delta sizes per upgrade path and the package diff. Everything lives under
 * $APT_OSTREE_CACHE/demo (default /var/cache/apt-ostree/demo), recreated on each run.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { createLogger } from "../shared/log.ts";
import { diffPackages, renderPackageDiff } from "../shared/image/package-diff.ts";
import { generateKeyPair, keyId } from "../shared/sign/ed25519.ts";
import { formatBytes } from "./cli/compose.ts";
import { DEFAULT_RECIPES_DIR } from "./cli/defaults.ts";
import { defaultCacheDir } from "./compose/cache.ts";
import { compose, type ComposeResult } from "./compose/compose.ts";
import { createComposeProgress } from "./compose/progress.ts";
import { resolveRevision } from "./db/revision.ts";
import { publish, type PublishResult } from "./publish/publish.ts";

const MACHINE = "qemu-amd64";

async function main(): Promise<void> {
  const cache = defaultCacheDir();
  const demoDir = join(cache, "demo");
  const repo = join(demoDir, "repo");
  await rm(demoDir, { recursive: true, force: true });
  await mkdir(demoDir, { recursive: true });
  const log = createLogger({ name: "demo", level: process.env.APT_OSTREE_LOG_LEVEL ?? "warn" });
  const key = generateKeyPair();
  const say = (line: string) => process.stdout.write(`${line}\n`);

  const step = async (image: string, label: string): Promise<[ComposeResult, PublishResult]> => {
    say(`\n== ${label}: compose ${image} for ${MACHINE}`);
    const started = Date.now();
    const composed = await compose({
      recipesDir: DEFAULT_RECIPES_DIR, image, machine: MACHINE, repo, cacheDir: cache, indexMaxAgeSeconds: 3600, log,
      progress: createComposeProgress(log),
    });
    say(`   composed version ${composed.version} in ${seconds(started)}: ${composed.commit}`);
    say(`   ${composed.packages} packages, kernel ${composed.kernel}; ${formatBytes(composed.sizes!.unpacked)} unpacked, ${formatBytes(composed.sizes!.compressed)} in the repo`);
    say(`== ${label}: sign, generate static deltas, update the summary, write the channel manifest`);
    const publishStarted = Date.now();
    const published = await publish({ repo, ref: composed.ref, key, channel: "stable", deltaDepth: 3, expiresInSeconds: 30 * 86400, log });
    say(`   published in ${seconds(publishStarted)}`);
    return [composed, published];
  };

  const [v1] = await step("appliance-minimal", "Release 1");
  const [v2, published] = await step("appliance-minimal-next", "Release 2 (adds curl)");

  const from = await resolveRevision(repo, v1.commit);
  const to = await resolveRevision(repo, v2.commit);
  say("\n== Result");
  say(`Repo:      ${repo}`);
  say(`Ref:       ${published.ref}`);
  say(`Signed by: ed25519 key ${keyId(key.publicKey)}`);
  say(`Manifest:  ${join(repo, published.manifest)}`);
  say("Versions:");
  for (const v of [v1, v2]) say(`  ${v.version.padEnd(3)} ${v.commit}  ${formatBytes(v.sizes!.unpacked)} unpacked, ${formatBytes(v.sizes!.compressed)} compressed`);
  say(`Static deltas to version ${published.version}:`);
  for (const d of published.deltas) say(`  from ${(d.fromVersion ?? "scratch").padEnd(8)} ${formatBytes(d.size).padStart(10)} in ${d.files.length} file(s)`);
  say(`Package changes ${v1.version} -> ${v2.version}:`);
  say(renderPackageDiff(diffPackages(from.info.packages, to.info.packages)).trimEnd().replace(/^/gm, "  "));
}

function seconds(since: number): string {
  return `${Math.round((Date.now() - since) / 1000)} s`;
}

await main().catch((error: unknown) => {
  process.stderr.write(`error: ${(error as Error).message}\n`);
  process.exit(1);
});
