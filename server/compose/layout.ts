/**
 * Converts a Debian rootfs into the OSTree layout (DESIGN.md 2.2): /etc in /usr/etc, an empty
 * /var recreated by tmpfiles.d (files kept in /usr/share/factory), the dpkg database under
 * /usr, and /home, /opt, /srv, /root, /mnt, /usr/local as symlinks into /var.
 */
import { lstat, mkdir, readdir, readlink, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { AptOstreeError } from "../../shared/errors.ts";
import { removeFile } from "../../shared/fs/remove-file.ts";
import { renderTmpfiles, type VarEntry } from "../../shared/image/tmpfiles.ts";
import { DPKG_DATABASE, FACTORY, TMPFILES_CONF, TRANSIENT, VAR_LINKS } from "../../shared/image/ostree-layout.ts";

export { DPKG_DATABASE, TMPFILES_CONF, VAR_LINKS };

export class LayoutError extends AptOstreeError {
  constructor(message: string) {
    super("E_LAYOUT", message);
  }
}

export interface LayoutSummary {
  tmpfilesLines: number;
  factoryFiles: number;
  droppedFiles: number;
}

export async function convertToOstreeLayout(root: string): Promise<LayoutSummary> {
  for (const required of ["usr", "etc"]) {
    if (!(await isDir(join(root, required)))) throw new LayoutError(`${root} has no /${required}: not a Debian rootfs`);
  }
  if (await exists(join(root, "usr/etc"))) throw new LayoutError(`${root} already has /usr/etc: it was converted before`);
  if (!(await exists(join(root, "usr/lib/os-release")))) throw new LayoutError(`${root} has no /usr/lib/os-release, which ostree admin deploy needs`);

  for (const dir of ["dev", "proc", "sys", "run", "tmp"]) await emptyDir(join(root, dir));

  const dpkg = join(root, "var/lib/dpkg");
  if (await isDir(dpkg)) {
    await mkdir(dirname(join(root, DPKG_DATABASE)), { recursive: true });
    await rename(dpkg, join(root, DPKG_DATABASE));
  }

  for (const [path, varPath] of VAR_LINKS) {
    const source = join(root, path);
    const target = join(root, varPath);
    const info = await lstat(source).catch(() => null);
    await mkdir(dirname(target), { recursive: true });
    if (info?.isDirectory()) await rename(source, target);
    else {
      if (info) await removeFile(source);
      await mkdir(target, { mode: path === "root" ? 0o700 : 0o755 });
    }
    await symlink(relative(dirname(source), target), source);
  }

  const entries: VarEntry[] = [];
  let factoryFiles = 0;
  let droppedFiles = 0;
  for await (const item of walk(root, "var")) {
    const absolute = `/${item.path}`;
    if (item.info.isDirectory()) entries.push({ kind: "dir", path: absolute, mode: item.info.mode, uid: item.info.uid, gid: item.info.gid });
    else if (item.info.isSymbolicLink()) entries.push({ kind: "symlink", path: absolute, target: await readlink(join(root, item.path)) });
    else if (item.info.isFile() && !TRANSIENT.some((prefix) => item.path.startsWith(`${prefix}/`))) {
      const factory = join(root, FACTORY, item.path);
      await mkdir(dirname(factory), { recursive: true });
      await rename(join(root, item.path), factory);
      entries.push({ kind: "file", path: absolute });
      factoryFiles++;
    } else droppedFiles++;
  }
  if (await exists(join(root, DPKG_DATABASE))) {
    entries.push({ kind: "symlink", path: "/var/lib/dpkg", target: relative("/var/lib", `/${DPKG_DATABASE}`) });
  }
  await emptyDir(join(root, "var"));
  await mkdir(dirname(join(root, TMPFILES_CONF)), { recursive: true });
  await writeFile(join(root, TMPFILES_CONF), renderTmpfiles(entries));

  await rename(join(root, "etc"), join(root, "usr/etc"));
  await mkdir(join(root, "sysroot"), { recursive: true });
  await rm(join(root, "ostree"), { recursive: true, force: true });
  await symlink("sysroot/ostree", join(root, "ostree"));
  return { tmpfilesLines: entries.length, factoryFiles, droppedFiles };
}

/** Depth-first, sorted, parents before children; does not follow symlinks. */
async function* walk(root: string, path: string): AsyncGenerator<{ path: string; info: import("node:fs").Stats }> {
  for (const name of (await readdir(join(root, path))).sort()) {
    const child = `${path}/${name}`;
    const info = await lstat(join(root, child));
    yield { path: child, info };
    if (info.isDirectory()) yield* walk(root, child);
  }
}

async function emptyDir(dir: string): Promise<void> {
  if (!(await isDir(dir))) return;
  for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true });
}

async function isDir(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => null))?.isDirectory() ?? false;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}
