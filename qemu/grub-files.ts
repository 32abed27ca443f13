/** What every GRUB install on our disks puts on /boot: the platform's modules and an empty grubenv for the boot counter. */
import { cp, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { AptOstreeError } from "../shared/errors.ts";

export class GrubInstallError extends AptOstreeError {
  constructor(message: string) {
    super("E_GRUB_INSTALL", message);
  }
}

/** grub-mkimage for `platform` (`i386-pc`, `arm64-efi`) from the modules in `moduleDir`. */
export async function grubMkimage(platform: string, moduleDir: string, prefix: string, out: string, modules: string[]): Promise<void> {
  const made = await execa("grub-mkimage", ["-O", platform, "-d", moduleDir, "-o", out, "-p", prefix, ...modules], { reject: false, all: true });
  if (made.failed) throw new GrubInstallError(`grub-mkimage -O ${platform} failed: ${made.code === "ENOENT" ? "not installed (apt-get install grub-common)" : made.all}`);
}

/** Copies `moduleDir`'s modules to /boot/grub/<platform> and creates /boot/grub/grubenv and the counter's copy apt-ostree.env. */
export async function installGrubModulesAndEnv(moduleDir: string, platform: string, bootDir: string): Promise<void> {
  const modules = join(bootDir, "grub", platform);
  await mkdir(modules, { recursive: true });
  await cp(moduleDir, modules, { recursive: true, filter: (source) => !/\.(img|image|exec|module|efi)$/.test(source) || source === moduleDir });
  // grubenv and the copy GRUB reads when grubenv is unreadable (08_apt-ostree-counter).
  for (const name of ["grubenv", "apt-ostree.env"]) {
    const env = await execa("grub-editenv", [join(bootDir, "grub", name), "create"], { reject: false, all: true });
    if (env.failed) throw new GrubInstallError(`grub-editenv failed: ${env.all}`);
  }
}
