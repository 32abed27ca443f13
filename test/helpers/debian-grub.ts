/**
 * Debian's GRUB for arm64 UEFI (grub-efi-arm64-bin), which Debian does not ship for amd64 hosts:
 * its packages extracted (mmdebstrap --variant=extract, no maintainer scripts) once into a tree
 * under the cache dir. Tests put its modules into a synthetic arm64 image, as a composed
 * qemu-arm64 image carries them.
 */
import { mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { defaultCacheDir } from "../../server/compose/cache.ts";

export async function ensureGrubArm64Efi(cacheDir = defaultCacheDir()): Promise<string> {
  const root = join(cacheDir, "test-roots", "grub-efi-arm64");
  const modules = join(root, "usr/lib/grub/arm64-efi");
  if (await stat(join(root, ".complete")).catch(() => null)) return modules;
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  await execa("mmdebstrap", ["--mode=root", "--variant=extract", "--architectures=arm64", "--include=grub-efi-arm64-bin", "bookworm", root, "http://deb.debian.org/debian"], { stdio: "ignore" });
  await execa("touch", [join(root, ".complete")]);
  return modules;
}
