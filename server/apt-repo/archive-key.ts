/**
 * The OpenPGP key that signs the server's APT repository (`apt-repo`): APT verifies only
 * OpenPGP, so this key sits beside the fleet's ed25519 keys. It lives in a GnuPG home of its own
 * (mode 0700) and its public half is exported as a binary keyring, `archive-keyring.gpg`, which
 * compose puts in the image (`--apt-keyring`): devices trust the repository because their image
 * does, as Debian's images trust debian-archive-keyring.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { AptOstreeError } from "../../shared/errors.ts";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import { acquirePidLock } from "../../shared/fs/pid-lock.ts";

export class ArchiveKeyError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_ARCHIVE_KEY", message, { cause });
  }
}

export interface ArchiveKey {
  /** The GnuPG home holding the secret key. */
  home: string;
  fingerprint: string;
  /** The public key as a binary keyring (APT's Signed-By). */
  keyring: string;
}

export const ARCHIVE_KEYRING = "archive-keyring.gpg";
const USER_ID = "apt-ostree archive signing key";

async function gpg(home: string, args: string[], input?: string): Promise<string> {
  const result = await execa("gpg", ["--homedir", home, "--batch", "--no-tty", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", ...args], {
    reject: false,
    env: { LC_ALL: "C.UTF-8" },
    ...(input === undefined ? {} : { input }),
    timeout: 60_000,
  });
  if (result.exitCode !== 0) {
    const reason = result.stderr.trim().split("\n").slice(-3).join("; ") || result.shortMessage;
    throw new ArchiveKeyError(`gpg ${args.find((a) => a.startsWith("--") && !["--armor", "--yes"].includes(a)) ?? ""} failed: ${reason}`);
  }
  return result.stdout;
}

/** Stops the gpg-agent GnuPG started for `home` (it would outlive the command). */
export async function stopAgent(home: string): Promise<void> {
  await execa("gpgconf", ["--homedir", home, "--kill", "gpg-agent"], { reject: false });
}

/** The fingerprint of the home's secret key, null when it has none; a gpg that fails is an error, never "no key". */
async function secretFingerprint(home: string): Promise<string | null> {
  const listing = await gpg(home, ["--with-colons", "--list-secret-keys"]);
  const lines = listing.split("\n");
  const sec = lines.findIndex((line) => line.startsWith("sec:"));
  if (sec < 0) return null;
  const fpr = lines.slice(sec + 1).find((line) => line.startsWith("fpr:"));
  return fpr?.split(":")[9] ?? null;
}

/**
 * The archive key in `dir`, made on first use (ed25519, no expiry, no passphrase: the GnuPG
 * home's mode protects it, like the fleet's other secret keys) under `dir/.lock`, so two first
 * runs make one key. `onCreated` hears of a new key: every image must then be composed again
 * with its keyring. The public keyring is rewritten when it differs, so it always matches the
 * key that signs.
 */
export async function ensureArchiveKey(dir: string, onCreated: (fingerprint: string) => void = () => {}): Promise<ArchiveKey> {
  const home = join(dir, "gnupg");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const release = await acquirePidLock(join(dir, ".lock"), "another apt-repo");
  try {
    await mkdir(home, { recursive: true, mode: 0o700 });
    await chmod(home, 0o700);
    let fingerprint = await secretFingerprint(home);
    if (fingerprint === null) {
      await gpg(home, ["--quick-generate-key", USER_ID, "ed25519", "sign", "never"]);
      fingerprint = await secretFingerprint(home);
      if (fingerprint === null) throw new ArchiveKeyError(`gpg made no key in ${home}`);
      onCreated(fingerprint);
    }
    const exported = await execa("gpg", ["--homedir", home, "--batch", "--export", fingerprint], { encoding: "buffer", stripFinalNewline: false, reject: false });
    if (exported.exitCode !== 0 || exported.stdout.length === 0) throw new ArchiveKeyError(`cannot export the archive key ${fingerprint} from ${home}`);
    const keyring = join(dir, ARCHIVE_KEYRING);
    const current = await readFile(keyring).catch(() => null);
    if (!current?.equals(exported.stdout)) await writeFileAtomic(keyring, exported.stdout, 0o644);
    return { home, fingerprint, keyring };
  } catch (error) {
    await stopAgent(home);
    throw error;
  } finally {
    await release();
  }
}

/**
 * Reads a keyring file an operator names (compose --apt-keyring): public keys only, as gpg reads
 * it. A secret key exported by mistake would ship the repository's signing key in every image.
 */
export async function readArchiveKeyring(file: string): Promise<Buffer> {
  const info = await stat(file).catch((error: NodeJS.ErrnoException) => {
    throw new ArchiveKeyError(`cannot read the APT keyring ${file}: ${error.code ?? error.message}`);
  });
  if (!info.isFile() || info.size === 0 || info.size > 64 * 1024) throw new ArchiveKeyError(`${file}: not an APT keyring (a non-empty file of at most 64 KiB, as apt-repo writes ${ARCHIVE_KEYRING})`);
  const bytes = await readFile(file);
  // An OpenPGP packet: the tag byte has its top bit set; an armored file starts with '-'.
  if ((bytes[0]! & 0x80) === 0) throw new ArchiveKeyError(`${file}: not a binary OpenPGP keyring (APT's Signed-By wants ${ARCHIVE_KEYRING} as apt-repo writes it, not armored text)`);
  const home = await mkdtemp(join(tmpdir(), "apt-ostree-keyring-"));
  try {
    const shown = await gpg(home, ["--with-colons", "--show-keys", file]);
    const kinds = new Set(shown.split("\n").map((line) => line.split(":")[0]));
    if (kinds.has("sec") || kinds.has("ssb")) throw new ArchiveKeyError(`${file} holds a secret key: give the public keyring (apt-repo's KEYDIR/${ARCHIVE_KEYRING}), never the signing key`);
    if (!kinds.has("pub")) throw new ArchiveKeyError(`${file} holds no public key`);
  } finally {
    await stopAgent(home);
    await rm(home, { recursive: true, force: true });
  }
  return bytes;
}

/**
 * Signs `release` (the Release file's bytes): InRelease (clearsigned) and Release.gpg (detached,
 * armored), each checked with gpgv against the exported keyring before it is returned: a
 * repository the devices' keyring cannot verify is never published.
 */
export async function signRelease(key: ArchiveKey, release: string): Promise<{ inRelease: string; detached: string }> {
  const inRelease = `${await gpg(key.home, ["--local-user", key.fingerprint, "--digest-algo", "SHA512", "--clearsign"], release)}\n`;
  const detached = `${await gpg(key.home, ["--local-user", key.fingerprint, "--digest-algo", "SHA512", "--armor", "--detach-sign"], release)}\n`;
  const work = await mkdtemp(join(tmpdir(), "apt-ostree-release-"));
  try {
    await writeFile(join(work, "InRelease"), inRelease);
    await writeFile(join(work, "Release"), release);
    await writeFile(join(work, "Release.gpg"), detached);
    for (const args of [["InRelease"], ["Release.gpg", "Release"]]) {
      const checked = await execa("gpgv", ["--keyring", key.keyring, ...args.map((name) => join(work, name))], { reject: false, env: { LC_ALL: "C.UTF-8" }, timeout: 60_000 });
      if (checked.exitCode !== 0) throw new ArchiveKeyError(`the signature on ${args[0]} does not verify with ${key.keyring} (key ${key.fingerprint}): ${checked.stderr.trim().split("\n").slice(-2).join("; ")}`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { inRelease, detached };
}

/** Removes a key directory (tests). */
export async function removeArchiveKey(dir: string): Promise<void> {
  await stopAgent(join(dir, "gnupg"));
  await rm(dir, { recursive: true, force: true });
}
