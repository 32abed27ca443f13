/**
 * Packages layering refuses, whether asked for or pulled in: the boot chain and the update
 * machinery belong to the signed base, where a failed boot falls back to a known-good release.
 * A layered kernel or bootloader would not even be booted (ostree takes the kernel from the
 * deployment's /usr/lib/modules at deploy time, GRUB is installed once to the disk).
 */
const REFUSED: ReadonlyArray<readonly [RegExp, string]> = [
  [/^linux-(image|modules|headers)-/, "the kernel comes with the base image (update the base to change it)"],
  [/^(initramfs-tools|dracut)(-.*)?$/, "the initramfs is built into the base image"],
  [/^(grub|shim|systemd-boot)(-.*|\d.*)?$/, "the bootloader belongs to the disk and the base image"],
  [/^(ostree|ostree-boot|libostree-.*)$/, "ostree runs the deployments: it changes only with the base"],
  [/^(dpkg|apt|libc6|libc-bin|base-files|usrmerge|systemd|systemd-sysv|udev|init|init-system-helpers)$/, "a core package of the base: it changes only with the base"],
];

/** Why `name` cannot be layered, installed, replaced or removed; null when it can. */
export function refusedPackage(name: string): string | null {
  return REFUSED.find(([pattern]) => pattern.test(name))?.[1] ?? null;
}
