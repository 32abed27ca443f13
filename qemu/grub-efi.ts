/**
 * Installs GRUB for UEFI (arm64-efi) on a disk's EFI system partition: a grub-mkimage'd
 * `EFI/BOOT/BOOTAA64.EFI`, the removable-media path the firmware boots without NVRAM entries,
 * whose prefix names the /boot partition, so everything else (modules, grub.cfg, grubenv) lives
 * on /boot like the BIOS install. The ESP is written with mtools: no mount, and the running
 * system never needs it. Modules come from the image (grub-efi-arm64-bin is in the commit; Debian
 * does not ship it for amd64 hosts), and the host's grub-mkimage builds for any platform.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { grubMkimage, GrubInstallError, installGrubModulesAndEnv } from "./grub-files.ts";

const PLATFORM = "arm64-efi";
const CORE_MODULES = ["part_gpt", "ext2", "fat"];
export const EFI_BOOT_FILE = "EFI/BOOT/BOOTAA64.EFI";

export interface GrubEfiOptions {
  /** The EFI system partition's block device (already formatted FAT). */
  esp: string;
  /** GRUB's arm64-efi modules: `<deployment>/usr/lib/grub/arm64-efi`. */
  moduleDir: string;
  /** GRUB's name of the /boot partition, e.g. `hd0,gpt2`. */
  bootPartition: string;
  /** The mounted /boot. */
  bootDir: string;
  workDir: string;
}

async function mtools(tool: string, args: string[]): Promise<void> {
  const result = await execa(tool, args, { reject: false, all: true, env: { MTOOLS_SKIP_CHECK: "1" } });
  if (result.failed) throw new GrubInstallError(`${tool} ${args.join(" ")} failed: ${result.code === "ENOENT" ? "mtools is not installed (bash scripts/setup.sh installs it)" : result.all}`);
}

export async function installGrubEfi(options: GrubEfiOptions): Promise<void> {
  const image = join(options.workDir, "grub-arm64.efi");
  try {
    await grubMkimage(PLATFORM, options.moduleDir, `(${options.bootPartition})/grub`, image, CORE_MODULES);
    await mtools("mmd", ["-i", options.esp, "::/EFI", "::/EFI/BOOT"]);
    await mtools("mcopy", ["-i", options.esp, image, `::/${EFI_BOOT_FILE}`]);
  } finally {
    await rm(image, { force: true });
  }
  await installGrubModulesAndEnv(options.moduleDir, PLATFORM, options.bootDir);
}
