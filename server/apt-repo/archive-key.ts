/**
 * The OpenPGP key that signs the server's APT repository (`apt-repo`): APT verifies only
 * OpenPGP, so this key sits beside the fleet's ed25519 keys. It lives in a GnuPG home of its own
 * (mode 0700) and its public half is exported as a binary keyring, `archive-keyring.gpg`, which
 * compose puts in the image (`--apt-keyring`): devices trust the repository because their image
 * does, as Debian's images trust debian-archive-keyring.
 */
import { chmod, mkdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { AptOstreeError } from "../../shared/errors.ts";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";

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

async function secretFingerprint(home: string): Promise<string | null> {
  const listing = await gpg(home, ["--with-colons", "--list-secret-keys"]).catch(() => "");
  const lines = listing.split("\n");
  const sec = lines.findIndex((line) => line.startsWith("sec:"));
  if (sec < 0) return null;
  const fpr = lines.slice(sec + 1).find((line) => line.startsWith("fpr:"));
  return fpr?.split(":")[9] ?? null;
}

/**
 * The archive key in `dir`, made on first use (ed25519, no expiry, no passphrase: the directory's
 * mode protects it, like the fleet's other secret keys). The public keyring is rewritten each time,
 * so it always matches the secret key that signs.
 */
export async function ensureArchiveKey(dir: string): Promise<ArchiveKey> {
  const home = join(dir, "gnupg");
  await mkdir(home, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  await chmod(home, 0o700);
  let fingerprint = await secretFingerprint(home);
  if (fingerprint === null) {
    await gpg(home, ["--quick-generate-key", USER_ID, "ed25519", "sign", "never"]);
    fingerprint = await secretFingerprint(home);
    if (fingerprint === null) throw new ArchiveKeyError(`gpg made no key in ${home}`);
  }
  const exported = await execa("gpg", ["--homedir", home, "--batch", "--export", fingerprint], { encoding: "buffer", reject: false });
  if (exported.exitCode !== 0 || exported.stdout.length === 0) throw new ArchiveKeyError(`cannot export the archive key ${fingerprint} from ${home}`);
  const keyring = join(dir, ARCHIVE_KEYRING);
  const current = await readFile(keyring).catch(() => null);
  if (!current?.equals(exported.stdout)) await writeFileAtomic(keyring, exported.stdout, 0o644);
  return { home, fingerprint, keyring };
}

/** Reads a keyring file an operator names (compose --apt-keyring): a binary OpenPGP keyring of reasonable size. */
export async function readArchiveKeyring(file: string): Promise<Buffer> {
  const info = await stat(file).catch((error: NodeJS.ErrnoException) => {
    throw new ArchiveKeyError(`cannot read the APT keyring ${file}: ${error.code ?? error.message}`);
  });
  if (!info.isFile() || info.size === 0 || info.size > 64 * 1024) throw new ArchiveKeyError(`${file}: not an APT keyring (a non-empty file of at most 64 KiB, as apt-repo writes ${ARCHIVE_KEYRING})`);
  const bytes = await readFile(file);
  // An OpenPGP packet: the tag byte has its top bit set; an armored file starts with '-'.
  if ((bytes[0]! & 0x80) === 0) throw new ArchiveKeyError(`${file}: not a binary OpenPGP keyring (APT's Signed-By wants ${ARCHIVE_KEYRING} as apt-repo writes it, not armored text)`);
  return bytes;
}

/** Signs `release` (the Release file's bytes): InRelease (clearsigned) and Release.gpg (detached, armored). */
export async function signRelease(key: ArchiveKey, release: string): Promise<{ inRelease: string; detached: string }> {
  const inRelease = await gpg(key.home, ["--local-user", key.fingerprint, "--digest-algo", "SHA512", "--clearsign"], release);
  const detached = await gpg(key.home, ["--local-user", key.fingerprint, "--digest-algo", "SHA512", "--armor", "--detach-sign"], release);
  return { inRelease: `${inRelease}\n`, detached: `${detached}\n` };
}

/** Removes a key directory (tests). */
export async function removeArchiveKey(dir: string): Promise<void> {
  await stopAgent(join(dir, "gnupg"));
  await rm(dir, { recursive: true, force: true });
}
