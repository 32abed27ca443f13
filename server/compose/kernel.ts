/**
 * Moves the kernel where OSTree wants it (`/usr/lib/modules/$KVER/vmlinuz`) and builds the
 * initramfs there with dracut, no-hostonly and reproducible (DESIGN.md 2.2, 5.1).
 */
import { readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { AptOstreeError } from "../../shared/errors.ts";
import { removeFile } from "../../shared/fs/remove-file.ts";
import { runInChroot } from "../../shared/chroot.ts";
import type { ComposeProgress } from "./progress.ts";
import type { Recipe } from "./recipe.ts";

export class KernelLayoutError extends AptOstreeError {
  constructor(message: string) {
    super("E_KERNEL_LAYOUT", message);
  }
}

/** Returns the kernel version, or null when the image has no kernel. */
export async function installKernel(root: string, recipe: Recipe, progress: ComposeProgress): Promise<string | null> {
  const boot = join(root, "boot");
  const kernels = (await readdir(boot).catch(() => [] as string[])).filter((name) => name.startsWith("vmlinuz-")).sort();
  if (kernels.length === 0) {
    if (recipe.kernelPackage) throw new KernelLayoutError(`'${recipe.kernelPackage}' was installed but /boot has no vmlinuz-*`);
    return null;
  }
  if (kernels.length > 1) throw new KernelLayoutError(`more than one kernel in /boot (${kernels.join(", ")}); an image holds exactly one`);
  const kver = kernels[0]!.slice("vmlinuz-".length);
  const modules = join(root, "usr/lib/modules", kver);
  if (!(await exists(modules))) throw new KernelLayoutError(`kernel ${kver} has no /usr/lib/modules/${kver}`);

  await rename(join(boot, `vmlinuz-${kver}`), join(modules, "vmlinuz"));
  // remove-files may have dropped modules the machine cannot use: index what is left.
  await runInChroot(root, ["depmod", kver], { what: `depmod for kernel ${kver}` });
  if (await exists(join(root, "usr/bin/dracut"))) {
    progress.phase("initramfs", `dracut for ${kver}`);
    await runInChroot(
      root,
      ["dracut", "--force", "--no-hostonly", "--reproducible", "--kver", kver, ...recipe.initramfsArgs, `/usr/lib/modules/${kver}/initramfs.img`],
      { env: { SOURCE_DATE_EPOCH: String(recipe.sourceDateEpoch) }, what: `dracut for kernel ${kver}` },
    );
  } else if (await exists(join(boot, `initrd.img-${kver}`))) {
    await rename(join(boot, `initrd.img-${kver}`), join(modules, "initramfs.img"));
  }
  for (const name of await readdir(boot)) await rm(join(boot, name), { recursive: true, force: true });
  for (const link of ["vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"]) await removeFile(join(root, link));
  return kver;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}
