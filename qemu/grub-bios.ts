/**
 * Installs GRUB for BIOS on a GPT disk without grub-install: on this host grub-install cannot
 * map a loop device's partitions to a GRUB drive ("cannot find a GRUB drive for
 * /dev/loop0p2"), and our layout is fixed anyway. So do what grub-bios-setup does with a known
 * layout: grub-mkimage a core.img whose prefix names the /boot partition, embed it in the
 * BIOS-boot partition, write boot.img's code into the MBR (keeping the protective partition
 * table) pointing at it, and copy the modules to /boot/grub/i386-pc.
 *
 * Offsets are GRUB 2.06's (include/grub/i386/pc/boot.h, kernel.h).
 */
import { open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { grubMkimage, GrubInstallError, installGrubModulesAndEnv } from "./grub-files.ts";

const SECTOR = 512;
const KERNEL_SECTOR_OFFSET = 0x5c;
const BOOT_DRIVE_CHECK_OFFSET = 0x66;
const BPB_START = 0x03;
const BPB_END = 0x5a;
const NT_MAGIC_OFFSET = 0x1b8;
/** diskboot.img ends with one blocklist entry: start sector (u64), sector count (u16), segment (u16). */
const BLOCKLIST_OFFSET = SECTOR - 12;
const CORE_MODULES = ["biosdisk", "part_gpt", "ext2"];

export interface GrubBiosOptions {
  /** The whole disk (a loop device or an image file). */
  disk: string;
  /** First sector and size in sectors of the BIOS-boot partition (GPT type ef02). */
  biosBootStart: number;
  biosBootSectors: number;
  /** GRUB's name of the /boot partition, e.g. `hd0,gpt2`. */
  bootPartition: string;
  /** GRUB's i386-pc modules and boot.img: the image's own (`<deployment>/usr/lib/grub/i386-pc`). */
  moduleDir: string;
  /** The mounted /boot: modules go to grub/i386-pc there. */
  bootDir: string;
  /** Scratch directory for core.img. */
  workDir: string;
}

export async function installGrubBios(options: GrubBiosOptions): Promise<void> {
  const coreFile = join(options.workDir, "core.img");
  await grubMkimage("i386-pc", options.moduleDir, `(${options.bootPartition})/grub`, coreFile, CORE_MODULES);
  const core = await readFile(coreFile);
  await rm(coreFile, { force: true });
  const coreSectors = Math.ceil(core.length / SECTOR);
  if (coreSectors > options.biosBootSectors) throw new GrubInstallError(`core.img needs ${coreSectors} sectors; the BIOS-boot partition has ${options.biosBootSectors}`);
  const padded = Buffer.alloc(coreSectors * SECTOR);
  core.copy(padded);
  padded.writeBigUInt64LE(BigInt(options.biosBootStart + 1), BLOCKLIST_OFFSET);
  padded.writeUInt16LE(coreSectors - 1, BLOCKLIST_OFFSET + 8);

  const bootImg = await readFile(join(options.moduleDir, "boot.img"));
  const handle = await open(options.disk, "r+");
  try {
    const mbr = Buffer.alloc(SECTOR);
    await handle.read(mbr, 0, SECTOR, 0);
    const code = Buffer.from(bootImg);
    mbr.copy(code, BPB_START, BPB_START, BPB_END);
    mbr.copy(code, NT_MAGIC_OFFSET, NT_MAGIC_OFFSET, SECTOR);
    code.writeBigUInt64LE(BigInt(options.biosBootStart), KERNEL_SECTOR_OFFSET);
    // Not a floppy: skip boot.img's floppy-drive probe (grub-bios-setup writes two NOPs there).
    code.writeUInt16LE(0x9090, BOOT_DRIVE_CHECK_OFFSET);
    await handle.write(padded, 0, padded.length, options.biosBootStart * SECTOR);
    await handle.write(code, 0, SECTOR, 0);
    await handle.sync();
  } finally {
    await handle.close();
  }

  await installGrubModulesAndEnv(options.moduleDir, "i386-pc", options.bootDir);
}
