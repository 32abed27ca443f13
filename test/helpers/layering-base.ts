/**
 * A real Debian base for package layering tests: bookworm's `apt` variant (essential packages,
 * dpkg and apt) made once by mmdebstrap and kept under the cache dir, then per test converted to
 * the OSTree layout compose produces and committed with image metadata into a bare repo.
 */
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { KERNEL } from "./synthetic-image.ts";
import { join } from "node:path";
import { execa } from "execa";
import { defaultCacheDir } from "../../server/compose/cache.ts";
import { parseDpkgStatus } from "../../shared/apt/dpkg-status.ts";
import { convertToOstreeLayout } from "../../server/compose/layout.ts";
import { encodeImageCommitMetadata } from "../../shared/image/commit-metadata.ts";
import { commitTree } from "../../shared/ostree/commit.ts";

export async function ensureLayeringBaseRoot(cacheDir = defaultCacheDir()): Promise<string> {
  const root = join(cacheDir, "test-roots", "bookworm-apt");
  if (await stat(join(root, ".complete")).catch(() => null)) return root;
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  await execa("mmdebstrap", ["--mode=root", "--variant=apt", '--aptopt=APT::Install-Recommends "false"', "bookworm", root, "http://deb.debian.org/debian"], { stdio: "ignore" });
  await execa("touch", [join(root, ".complete")]);
  return root;
}

/**
 * Converts a copy of the base root, with `extraDebs` installed (packages without scripts), and
 * commits it to `repo` on `branch` as compose would; returns the commit.
 */
export async function commitLayeringBase(repo: string, work: string, branch: string, version = "1", extraDebs: string[] = []): Promise<string> {
  const root = await ensureLayeringBaseRoot();
  const tree = join(work, `base-${version}`);
  await execa("cp", ["-a", root, tree]);
  await rm(join(tree, ".complete"));
  if (extraDebs.length > 0) await execa("dpkg", [`--root=${tree}`, "--install", ...extraDebs]);
  // A stand-in kernel where ostree looks for one, so the commit deploys.
  await mkdir(join(tree, "usr/lib/modules", KERNEL), { recursive: true });
  await writeFile(join(tree, "usr/lib/modules", KERNEL, "vmlinuz"), "not a kernel\n");
  await writeFile(join(tree, "usr/lib/modules", KERNEL, "initramfs.img"), "not an initramfs\n");
  const packages = parseDpkgStatus(await readFile(join(tree, "var/lib/dpkg/status"), "utf8"));
  await convertToOstreeLayout(tree);
  const metadata = encodeImageCommitMetadata({ version, sequence: Number(version), architecture: "amd64", machine: "test-machine", image: "test-image", recipeDigest: "0".repeat(64), packages, kernelArgs: [], sourceDateEpoch: 1, kernel: null });
  const commit = await commitTree({ repo, tree, branch, subject: `base ${version}`, timestamp: 1, ...metadata });
  await rm(tree, { recursive: true, force: true });
  return commit;
}
