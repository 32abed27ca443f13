/**
 * The APT configuration a layering run binds into its chroot: a copy of the device's
 * (`layeringAptDir`: sources.list, sources.list.d/, trusted.gpg and trusted.gpg.d/) plus, when
 * the image trusts the server's APT repository (compose --apt-keyring put its keyring in the
 * image and set `layeringSuite`), a source for `<repo URL>/apt`, so a device layers from its own
 * server by default and needs no Debian mirror. The copy is made anew for each run under the
 * layering state directory; the device's /etc/apt is only read.
 */
import { copyFile, lstat, mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ARCHIVE_KEYRING_IN_IMAGE } from "../../shared/image/archive-keyring.ts";

export interface ServerAptSource {
  /** The APT repository's URL: `<repo URL>/apt`. */
  url: string;
  suite: string;
  /** The CA the agent pins for https:// (its caFile): APT trusts only it for the repository's host. */
  caFile: string | null;
}

export interface PreparedAptEtc {
  dir: string;
  /** apt-get options the run adds (`-o ...`): the server's CA for its host. */
  aptOptions: string[];
}

export const SERVER_CA_FILE = "apt-ostree-ca.pem";

/** Files taken from the device's configuration: what APT reads for sources and keys, nothing else. */
const TOP_FILES = ["sources.list", "trusted.gpg"];
const DIRS: Array<{ dir: string; pattern: RegExp }> = [
  { dir: "sources.list.d", pattern: /^[A-Za-z0-9_.-]+\.(list|sources)$/ },
  { dir: "trusted.gpg.d", pattern: /^[A-Za-z0-9_.-]+\.(gpg|asc)$/ },
];
/** A configuration file larger than this is not a sources list or a keyring. */
const MAX_FILE_BYTES = 1024 * 1024;
export const SERVER_SOURCE_FILE = "apt-ostree-server.sources";

async function copyIfRegular(from: string, to: string): Promise<void> {
  const info = await lstat(from).catch(() => null);
  if (!info?.isFile() || info.size > MAX_FILE_BYTES) return;
  await copyFile(from, to);
}

/** The deb822 entry for the server's repository, its key the one the image ships. */
export function serverSourceEntry(source: Pick<ServerAptSource, "url" | "suite">): string {
  // The URL is the agent's own repo setting or a signed command's: still, one field, one line.
  if (!/^https?:\/\/[^\s]+$/.test(source.url) || !/^[a-z0-9][a-z0-9._-]{0,63}$/.test(source.suite)) throw new Error(`not a source for layering: ${JSON.stringify(source)}`);
  return ["# apt-ostree: the server's APT repository (apt-ostree-server apt-repo)", "Types: deb", `URIs: ${source.url}`, `Suites: ${source.suite}`, "Components: main", `Signed-By: /${ARCHIVE_KEYRING_IN_IMAGE}`, ""].join("\n");
}

/**
 * Writes `<stateDir>/etc` for one run, bound at `etcInRoot` in the chroot. `chrootRoot` is the
 * tree apt runs in: the server's source is added only when that tree has the archive keyring (an
 * image composed without --apt-keyring cannot verify the repository, so it is not offered one).
 * Over https:// APT checks the server's certificate against the agent's CA, as the agent does.
 */
export async function prepareAptEtc(options: { aptEtc: string; stateDir: string; serverSource: ServerAptSource | null; chrootRoot: string; etcInRoot: string }): Promise<PreparedAptEtc> {
  const target = join(options.stateDir, "etc");
  const next = join(options.stateDir, `etc.new-${process.pid}`);
  await rm(next, { recursive: true, force: true });
  for (const { dir } of DIRS) await mkdir(join(next, dir), { recursive: true });
  for (const file of TOP_FILES) await copyIfRegular(join(options.aptEtc, file), join(next, file));
  for (const { dir, pattern } of DIRS) {
    const names = await readdir(join(options.aptEtc, dir)).catch(() => [] as string[]);
    for (const name of names.filter((n) => pattern.test(n) && n !== SERVER_SOURCE_FILE)) await copyIfRegular(join(options.aptEtc, dir, name), join(next, dir, name));
  }
  const aptOptions: string[] = [];
  const source = options.serverSource;
  if (source && (await stat(join(options.chrootRoot, ARCHIVE_KEYRING_IN_IMAGE)).catch(() => null))?.isFile()) {
    await writeFile(join(next, "sources.list.d", SERVER_SOURCE_FILE), serverSourceEntry(source));
    const url = new URL(source.url);
    if (url.protocol === "https:" && source.caFile !== null) {
      await copyIfRegular(source.caFile, join(next, SERVER_CA_FILE));
      aptOptions.push("-o", `Acquire::https::${url.hostname}::CaInfo=${options.etcInRoot}/${SERVER_CA_FILE}`);
    }
  }
  await rm(target, { recursive: true, force: true });
  await rename(next, target);
  return { dir: target, aptOptions };
}
