/**
 * The APT configuration a layering run binds into its chroot: a copy of the device's
 * (`layeringAptDir`: sources.list, sources.list.d/, trusted.gpg and trusted.gpg.d/) plus, when
 * the image trusts the server's APT repository (compose --apt-keyring put its keyring in the
 * image and set `layeringSuite`), a source for `<repo URL>/apt`, so a device layers from its own
 * server by default and needs no Debian mirror. The copy is made anew for each run under the
 * layering state directory; the device's /etc/apt is only read.
 */
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ARCHIVE_KEYRING_IN_IMAGE } from "../../shared/image/archive-keyring.ts";
import { isProcessAlive } from "../../shared/process-alive.ts";
import { LayeringError } from "./errors.ts";

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
  /** Files of the device's configuration left out (not a regular file, over 1 MiB, not a sources or key file). */
  skipped: string[];
  /** Whether the server's repository is offered: "no-keyring" when the tree cannot verify it. */
  serverSource: "added" | "no-keyring" | "none";
  remove: () => Promise<void>;
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

/** Copies a regular file (a link is followed, as APT would) of at most 1 MiB; false when `from` is something else. */
async function copyIfRegular(from: string, to: string): Promise<boolean> {
  const info = await stat(from).catch(() => null);
  if (!info?.isFile() || info.size > MAX_FILE_BYTES) return false;
  await copyFile(from, to);
  return true;
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null)) !== null;
}

/** The deb822 entry for the server's repository, its key the one the image ships. */
export function serverSourceEntry(source: Pick<ServerAptSource, "url" | "suite">): string {
  // The URL is the agent's own repo setting or a signed command's: still, one field, one line.
  if (!/^https?:\/\/[^\s]+$/.test(source.url) || !/^[a-z0-9][a-z0-9._-]{0,63}$/.test(source.suite)) throw new LayeringError(`not a source layering can use: ${JSON.stringify(source)}`);
  return ["# apt-ostree: the server's APT repository (apt-ostree-server apt-repo)", "Types: deb", `URIs: ${source.url}`, `Suites: ${source.suite}`, "Components: main", `Signed-By: /${ARCHIVE_KEYRING_IN_IMAGE}`, ""].join("\n");
}

/**
 * Writes a configuration directory of its own for one run (under `stateDir`, removed by the
 * returned `remove`; a refresh-md from the CLI and an install in the agent never share one),
 * bound at `etcInRoot` in the chroot. `chrootRoot` is the tree apt runs in: the server's source
 * is added only when that tree has the archive keyring (an image composed without --apt-keyring
 * cannot verify the repository, so it is not offered one). Over https:// APT checks the server's
 * certificate against the agent's CA, as the agent does.
 */
export async function prepareAptEtc(options: { aptEtc: string; stateDir: string; serverSource: ServerAptSource | null; chrootRoot: string; etcInRoot: string }): Promise<PreparedAptEtc> {
  await mkdir(options.stateDir, { recursive: true });
  await removeDeadRuns(options.stateDir);
  const dir = join(options.stateDir, `etc.${process.pid}.${randomBytes(4).toString("hex")}`);
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    for (const { dir: sub } of DIRS) await mkdir(join(dir, sub), { recursive: true });
    const skipped: string[] = [];
    for (const file of TOP_FILES) if (!(await copyIfRegular(join(options.aptEtc, file), join(dir, file))) && (await exists(join(options.aptEtc, file)))) skipped.push(file);
    for (const { dir: sub, pattern } of DIRS) {
      const names = await readdir(join(options.aptEtc, sub)).catch(() => [] as string[]);
      for (const name of names.filter((n) => n !== SERVER_SOURCE_FILE)) {
        if (!pattern.test(name) || !(await copyIfRegular(join(options.aptEtc, sub, name), join(dir, sub, name)))) skipped.push(`${sub}/${name}`);
      }
    }
    const aptOptions: string[] = [];
    let serverSource: PreparedAptEtc["serverSource"] = "none";
    const source = options.serverSource;
    if (source) {
      if (!(await stat(join(options.chrootRoot, ARCHIVE_KEYRING_IN_IMAGE)).catch(() => null))?.isFile()) {
        serverSource = "no-keyring";
      } else {
        await writeFile(join(dir, "sources.list.d", SERVER_SOURCE_FILE), serverSourceEntry(source));
        serverSource = "added";
        const url = new URL(source.url);
        if (url.protocol === "https:" && source.caFile !== null) {
          if (!(await copyIfRegular(source.caFile, join(dir, SERVER_CA_FILE)))) {
            throw new LayeringError(`cannot read the agent's CA ${source.caFile} (caFile), which the server's APT repository ${source.url} must chain to: put the fleet's CA there`);
          }
          // APT's per-host keys cannot spell an IPv6 literal: such a host gets the CA for every https source.
          const scope = url.hostname.includes(":") || url.hostname.startsWith("[") ? "Acquire::https" : `Acquire::https::${url.hostname}`;
          aptOptions.push("-o", `${scope}::CaInfo=${options.etcInRoot}/${SERVER_CA_FILE}`);
        }
      }
    }
    return { dir, aptOptions, skipped, serverSource, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/** Run directories whose process is gone (killed mid-run). */
async function removeDeadRuns(stateDir: string): Promise<void> {
  for (const name of await readdir(stateDir).catch(() => [] as string[])) {
    const match = /^etc\.(\d+)\.[0-9a-f]{8}$/.exec(name);
    if (match && !isProcessAlive(Number(match[1]))) await rm(join(stateDir, name), { recursive: true, force: true });
  }
  // The single directory of earlier versions.
  await rm(join(stateDir, "etc"), { recursive: true, force: true });
}
