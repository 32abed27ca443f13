/**
 * Builds the signed APT repository `apt-repo` publishes beside the OSTree repo, with Debian's own
 * apt-ftparchive, in the layout Debian's archive uses:
 *
 *   pool/<suite>/main/<p>/<name>/<name>_<version>_<arch>.deb       immutable, added never replaced
 *   dists/<suite>/main/binary-<arch>/Packages{,.gz}                and by-hash/SHA256/<digest>
 *   dists/<suite>/{Release,Release.gpg,InRelease}                  InRelease written last
 *
 * A reader (APT, or a mirror copying the tree) sees the old repository or the new one: pool files
 * and by-hash indices only ever appear, Release says `Acquire-By-Hash: yes` so APT fetches the
 * indices by digest, and InRelease, the one file that names them, is replaced last by rename.
 * Every file is written to a temporary, fsync'd and renamed, so a power cut leaves the previous
 * repository whole. A pool file that exists with other bytes is refused: a name, version and
 * architecture is one package forever, as in Debian.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { constants } from "node:fs";
import { chmod, copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import { execa } from "execa";
import { AptOstreeError } from "../../shared/errors.ts";
import { removeAtomicWriteLeftovers, writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import { acquirePidLock } from "../../shared/fs/pid-lock.ts";
import type { Logger } from "../../shared/log.ts";
import { signRelease, type ArchiveKey } from "./archive-key.ts";

export class AptRepoError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_APT_REPO", message, { cause });
  }
}

/** A .deb to publish, with the fields its control file has (read by readDebFields). */
export interface DebFile {
  path: string;
  name: string;
  version: string;
  architecture: string;
}

export interface SuiteContent {
  suite: string;
  /** Architectures the suite's indices are made for (packages of `all` go into each). */
  architectures: string[];
  debs: DebFile[];
}

export interface BuildAptRepoOptions {
  /** The repository's root, e.g. `<ostree repo>/apt`. */
  dir: string;
  suites: SuiteContent[];
  key: ArchiveKey;
  log: Logger;
  /** By-hash indices kept per index file (the newest; readers of an older InRelease need theirs). */
  keepIndexGenerations?: number;
}

export interface SuiteResult {
  suite: string;
  architectures: string[];
  /** Packages in the suite's indices (all versions in its pool). */
  packages: number;
  /** Pool files this run added. */
  added: number;
  inRelease: string;
}

// Debian's rules (policy 5.6.1, 5.6.12), so a name or version never becomes a path of its own choosing.
const NAME = /^[a-z0-9][a-z0-9+.-]{0,127}$/;
const VERSION = /^(?:\d{1,9}:)?[A-Za-z0-9][A-Za-z0-9.+~-]{0,127}$/;
const ARCHITECTURE = /^[a-z0-9][a-z0-9-]{0,31}$/;
const SUITE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export function checkDebFields(fields: Omit<DebFile, "path">, what: string): void {
  if (!NAME.test(fields.name)) throw new AptRepoError(`${what}: package name '${fields.name}' is not a Debian package name`);
  if (!VERSION.test(fields.version)) throw new AptRepoError(`${what}: version '${fields.version}' is not a Debian version`);
  if (!ARCHITECTURE.test(fields.architecture)) throw new AptRepoError(`${what}: architecture '${fields.architecture}' is not a Debian architecture`);
}

export function checkArchitecture(architecture: string, what: string): void {
  if (!ARCHITECTURE.test(architecture)) throw new AptRepoError(`${what}: '${architecture}' is not a Debian architecture`);
}

export function checkSuiteName(suite: string): void {
  if (!SUITE.test(suite)) throw new AptRepoError(`suite '${suite}' must be lowercase letters, digits, '.', '_' or '-'`);
}

/** The fields of a .deb's control file, checked, with dpkg-deb. */
export async function readDebFields(path: string): Promise<DebFile> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    throw new AptRepoError(`cannot read ${path}: ${error.code ?? error.message}`);
  });
  if (!info.isFile()) throw new AptRepoError(`${path} is not a file`);
  const result = await execa("dpkg-deb", ["--showformat=${Package}\\n${Version}\\n${Architecture}\\n", "--show", path], { reject: false, timeout: 60_000 });
  if (result.exitCode !== 0) throw new AptRepoError(`${path} is not a Debian package: ${result.stderr.trim().split("\n").pop() ?? result.shortMessage}`);
  const [name = "", version = "", architecture = ""] = result.stdout.split("\n");
  const fields = { name, version, architecture };
  checkDebFields(fields, path);
  return { path, ...fields };
}

/** Debian's pool directory for a package: `lib` packages by their first four letters. */
export function poolPath(suite: string, deb: Omit<DebFile, "path">): string {
  const prefix = deb.name.startsWith("lib") && deb.name.length > 3 ? deb.name.slice(0, 4) : deb.name[0]!;
  return join("pool", suite, "main", prefix, deb.name, `${deb.name}_${deb.version.replace(/:/g, "%3a")}_${deb.architecture}.deb`);
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Adds `deb` to the pool unless the same bytes are there; refuses other bytes under its name. */
async function addToPool(dir: string, suite: string, deb: DebFile): Promise<boolean> {
  const target = join(dir, poolPath(suite, deb));
  const digest = await sha256File(deb.path);
  const existing = await stat(target).catch(() => null);
  if (existing) {
    if ((await sha256File(target)) === digest) return false;
    throw new AptRepoError(`${deb.path}: ${deb.name} ${deb.version} (${deb.architecture}) is already published in ${suite} with other contents; a version is published once (give the new build a new version)`);
  }
  await mkdir(dirname(target), { recursive: true });
  const temporary = join(dirname(target), `.${basename(target)}.tmp-${process.pid}`);
  // A copy, never a hardlink: a later rebuild of the source in place would change the published
  // package under its signed index. The copy is checked against the digest compared above.
  await rm(temporary, { force: true });
  await copyFile(deb.path, temporary, constants.COPYFILE_EXCL);
  await chmod(temporary, 0o644);
  if ((await sha256File(temporary)) !== digest) throw new AptRepoError(`${deb.path} changed while it was being published; run again`);
  await fsyncPath(temporary);
  await rename(temporary, target);
  await fsyncPath(dirname(target));
  return true;
}

async function ftparchive(cwd: string, args: string[]): Promise<string> {
  const result = await execa("apt-ftparchive", args, { cwd, reject: false, env: { LC_ALL: "C.UTF-8" }, maxBuffer: 512 * 1024 * 1024 });
  if (result.exitCode !== 0 || /^E: /m.test(result.stderr)) throw new AptRepoError(`apt-ftparchive ${args.find((a) => !a.startsWith("-")) ?? ""} failed: ${result.stderr.trim().split("\n").slice(-3).join("; ") || result.shortMessage}`);
  return result.stdout;
}

/** Writes an index under its name and under by-hash, then drops by-hash files past the newest `keep`. */
async function publishIndex(indexDir: string, name: string, bytes: Uint8Array, keep: number): Promise<void> {
  const byHash = join(indexDir, "by-hash", "SHA256");
  await mkdir(byHash, { recursive: true });
  const digest = createHash("sha256").update(bytes).digest("hex");
  if (!(await stat(join(byHash, digest)).catch(() => null))) await writeFileAtomic(join(byHash, digest), bytes);
  await writeFileAtomic(join(indexDir, name), bytes);
  const siblings: Array<{ file: string; mtime: number }> = [];
  for (const file of await readdir(byHash)) {
    if (file.startsWith(".")) continue;
    const info = await stat(join(byHash, file)).catch(() => null);
    if (info) siblings.push({ file, mtime: info.mtimeMs });
  }
  // Two indices (Packages and Packages.gz) per generation share the directory.
  for (const { file } of siblings.sort((a, b) => b.mtime - a.mtime).slice(keep * 2)) {
    if (file !== digest) await rm(join(byHash, file), { force: true });
  }
}

async function buildSuite(options: BuildAptRepoOptions, content: SuiteContent): Promise<SuiteResult> {
  const { dir, key, log } = options;
  checkSuiteName(content.suite);
  let added = 0;
  for (const deb of content.debs) if (await addToPool(dir, content.suite, deb)) added += 1;
  const suiteDir = join(dir, "dists", content.suite);
  // A run for one architecture keeps the suite's others: their indices are made again too.
  const published = await readFile(join(suiteDir, "Release"), "utf8").then((text) => /^Architectures: (.*)$/m.exec(text)?.[1]?.split(" ").filter(Boolean) ?? [], () => []);
  const architectures = [...new Set([...published, ...content.architectures])].sort();
  for (const arch of architectures) checkArchitecture(arch, `suite ${content.suite}`);
  const staging = join(dir, "dists", `.staging-${content.suite}-${process.pid}`);
  await rm(staging, { recursive: true, force: true });
  let packages = 0;
  const indices: Array<{ arch: string; plain: Buffer; gz: Buffer }> = [];
  for (const arch of architectures) {
    const text = await ftparchive(dir, ["--arch", arch, "packages", join("pool", content.suite)]);
    const plain = Buffer.from(text.length > 0 ? `${text}\n` : "");
    packages += (text.match(/^Package: /gm) ?? []).length;
    const gz = await promisify(gzip)(plain, { level: 9 });
    const stagedIndexDir = join(staging, "main", `binary-${arch}`);
    await mkdir(stagedIndexDir, { recursive: true });
    await writeFileAtomic(join(stagedIndexDir, "Packages"), plain);
    await writeFileAtomic(join(stagedIndexDir, "Packages.gz"), gz);
    indices.push({ arch, plain, gz });
  }
  // apt-ftparchive lists every file under the directory it is given, a Release among them:
  // the staging directory holds only the new indices. SHA256 only, as Debian's archive: APT
  // fetches by-hash with the strongest digest the Release names, and by-hash/ has SHA256 alone.
  const release = await ftparchive(dir, [
    ...["Origin=apt-ostree", "Label=apt-ostree", `Suite=${content.suite}`, `Codename=${content.suite}`, "Components=main", `Architectures=${architectures.join(" ")}`, "Acquire-By-Hash=yes", "Description=Packages for apt-ostree package layering", "MD5=false", "SHA1=false", "SHA512=false"].flatMap((field) => ["-o", `APT::FTPArchive::Release::${field}`]),
    "release",
    staging,
  ]);
  const releaseText = `${release}\n`;
  const signed = await signRelease(key, releaseText);
  const keep = options.keepIndexGenerations ?? 3;
  for (const index of indices) {
    const indexDir = join(suiteDir, "main", `binary-${index.arch}`);
    await publishIndex(indexDir, "Packages", index.plain, keep);
    await publishIndex(indexDir, "Packages.gz", index.gz, keep);
  }
  await writeFileAtomic(join(suiteDir, "Release"), releaseText);
  await writeFileAtomic(join(suiteDir, "Release.gpg"), signed.detached);
  await writeFileAtomic(join(suiteDir, "InRelease"), signed.inRelease);
  await rm(staging, { recursive: true, force: true });
  log.info({ event: "apt-repo.suite", suite: content.suite, packages, added }, `apt repository suite ${content.suite}: ${packages} package(s), ${added} added`);
  return { suite: content.suite, architectures, packages, added, inRelease: join(suiteDir, "InRelease") };
}

/** Builds under `<dir>/.lock`, after removing what a run killed part-way left (it was never named by an InRelease). */
export async function buildAptRepo(options: BuildAptRepoOptions): Promise<SuiteResult[]> {
  await mkdir(join(options.dir, "dists"), { recursive: true });
  const release = await acquirePidLock(join(options.dir, ".lock"), "another apt-repo");
  try {
    for (const name of await readdir(join(options.dir, "dists"))) {
      if (name.startsWith(".staging-")) await rm(join(options.dir, "dists", name), { recursive: true, force: true });
    }
    await removePoolLeftovers(join(options.dir, "pool"));
    await removeIndexLeftovers(join(options.dir, "dists"));
    const results: SuiteResult[] = [];
    for (const suite of options.suites) results.push(await buildSuite(options, suite));
    return results;
  } finally {
    await release();
  }
}

/** writeFileAtomic's temporaries a killed run left among the indices. */
async function removeIndexLeftovers(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  if (entries.some((entry) => entry.isFile())) await removeAtomicWriteLeftovers(dir);
  for (const entry of entries) if (entry.isDirectory() && !entry.name.startsWith(".")) await removeIndexLeftovers(join(dir, entry.name));
}

async function removePoolLeftovers(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (entry.isDirectory()) await removePoolLeftovers(join(dir, entry.name));
    else if (entry.name.startsWith(".") && entry.name.includes(".deb.tmp-")) await rm(join(dir, entry.name), { force: true });
  }
}

/** The keyring published beside the repository, for operators; devices use the one in their image. */
export async function publishKeyring(dir: string, key: ArchiveKey): Promise<string> {
  const target = join(dir, "archive-keyring.gpg");
  await writeFileAtomic(target, await readFile(key.keyring));
  return target;
}
