/** Where the OSTree layout of an image (DESIGN.md 2.2) keeps what a Debian rootfs has elsewhere: compose writes it, package layering reads and extends it. */

export const DPKG_DATABASE = "usr/share/dpkg/database";
export const TMPFILES_CONF = "usr/lib/tmpfiles.d/zz-apt-ostree-autovar.conf";
export const FACTORY = "usr/share/factory";

/** [path in the image, where its content lives under /var]: Fedora CoreOS's choices. */
export const VAR_LINKS: ReadonlyArray<readonly [string, string]> = [
  ["home", "var/home"],
  ["opt", "var/opt"],
  ["srv", "var/srv"],
  ["root", "var/roothome"],
  ["mnt", "var/mnt"],
  ["usr/local", "var/usrlocal"],
];

/** Files here are state of the build, not of the image: their directories are kept, their files dropped. */
export const TRANSIENT = ["var/log", "var/cache/apt", "var/lib/apt/lists", "var/tmp", "var/cache/ldconfig"];
