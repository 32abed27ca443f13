/**
 * The device's chain of roots (docs/trust.md): the image's first root, read-only in /usr, and
 * every version accepted since, in the state directory (re-verified from the image's root at each
 * start). A walk fetches version N+1 from the server until there is none, verifies each against
 * the one before, and persists the chain.
 */
import { mkdir, open, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import type { Logger } from "../../shared/log.ts";
import { formatPublicKey } from "../../shared/sign/keys.ts";
import { checkRootFresh, ROOT_JSON_LIMITS, serializeSignedRoot, signersFor, verifyNextRoot, verifyRootSelf, type Root, type SignedRoot } from "../../shared/trust/root.ts";
import type { RoleName, Signers } from "../../shared/trust/signers.ts";
import type { DeviceTrust } from "./device-trust.ts";

/** Most versions one walk takes: a device that slept through more catches up on its next check. */
export const MAX_ROOT_STEPS = 32;
/** The stored chain's bound (a fleet that rotates weekly takes 20 years to reach it). */
export const MAX_STORED_VERSIONS = 1024;

export interface RootStoreOptions {
  /** The image's root, e.g. /usr/lib/apt-ostree/root.json. */
  shippedRoot: string;
  /** Where the newest accepted root is kept, e.g. /var/lib/apt-ostree/trust. */
  trustDir: string;
  /** Version N's bytes from the server, null when it has none (404). */
  fetchRoot: (version: number) => Promise<Uint8Array | null>;
  /** Where stock ostree looks for trusted ed25519 keys (the image role's), or null for none. */
  ostreeKeysFile: string | null;
  now: () => Date;
  log: Logger;
}

export class RootStore implements DeviceTrust {
  private walking: Promise<boolean> | null = null;
  /** The versions accepted after the image's root, each as its canonical JSON line. */
  private readonly chain: string[] = [];

  private constructor(
    private readonly options: RootStoreOptions,
    private current: SignedRoot,
  ) {}

  /**
   * The image's root, followed by the versions stored since, each verified again against the one
   * before (a stored file alone proves nothing: anyone who can write the state directory could put
   * a self-signed root there). Versions the image already ships are skipped; a chain that breaks
   * is cut where it breaks, with a warning, and walked again from the server.
   */
  static async open(options: RootStoreOptions): Promise<RootStore> {
    const shipped = verifyRootSelf(await readFile(options.shippedRoot), options.shippedRoot);
    const store = new RootStore(options, shipped);
    const file = storedChainPath(options.trustDir);
    try {
      for (const text of await readStoredChain(file)) {
        const version = store.current.root.version;
        const next = parseVersion(text);
        if (next !== null && next <= version) continue;
        store.current = verifyNextRoot(store.current.root, text, `${file} (version ${next ?? "?"})`);
        store.chain.push(text);
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        options.log.warn({ event: "trust.stored-root.unusable", file, err: error }, `the stored roots break after version ${store.current.root.version}: ${(error as Error).message}; walking again from there`);
      }
    }
    await store.writeOstreeKeys();
    return store;
  }

  get rootVersion(): number {
    return this.current.root.version;
  }

  get root(): Root {
    return this.current.root;
  }

  signers(role: RoleName): Signers {
    checkRootFresh(this.current.root, this.options.now());
    return signersFor(this.current.root, role);
  }

  /** One walk at a time; a caller arriving during a walk shares its outcome. */
  refresh(): Promise<boolean> {
    this.walking ??= this.walk().finally(() => {
      this.walking = null;
    });
    return this.walking;
  }

  /**
   * Verifies versions one by one in memory, then persists the newest accepted once (also when a
   * later one is refused): each is re-verifiable from the server, so a power cut mid-walk only
   * means walking again from the version stored before.
   */
  private async walk(): Promise<boolean> {
    const from = this.current.root.version;
    try {
      for (let step = 0; step < MAX_ROOT_STEPS; step++) {
        const version = this.current.root.version + 1;
        const bytes = await this.options.fetchRoot(version);
        if (bytes === null) break;
        this.current = verifyNextRoot(this.current.root, bytes, `root version ${version} from the server`);
        this.chain.push(serializeSignedRoot(this.current));
      }
    } finally {
      if (this.current.root.version !== from) await this.persist(from);
    }
    return this.current.root.version !== from;
  }

  /** Every version accepted after the image's root, in one file written atomically. */
  private async persist(from: number): Promise<void> {
    await mkdir(this.options.trustDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(storedChainPath(this.options.trustDir), this.chain.join(""));
    const version = this.current.root.version;
    this.options.log.info({ event: "trust.root.accepted", from, version }, `trusting root version ${version} (was ${from})`);
    await this.writeOstreeKeys();
  }

  /** The image keys where `ostree pull` with sign-verify looks, so stock ostree agrees with the agent. */
  private async writeOstreeKeys(): Promise<void> {
    const file = this.options.ostreeKeysFile;
    if (file === null) return;
    const keys = [...signersFor(this.current.root, "image").keys.values()].map(formatPublicKey).join("");
    try {
      if ((await readFile(file, "utf8").catch(() => null)) === keys) return;
      await mkdir(dirname(file), { recursive: true });
      await writeFileAtomic(file, keys);
    } catch (error) {
      this.options.log.warn({ event: "trust.ostree-keys.failed", file, err: error }, `cannot write the image keys for ostree to ${file}: ${(error as Error).message}`);
    }
  }
}

/** One root version per line (canonical JSON has no newline), oldest first. */
export function storedChainPath(trustDir: string): string {
  return join(trustDir, "roots.jsonl");
}

/** The newest root the device stored, or null (for status and tests). */
export async function readStoredNewest(trustDir: string): Promise<SignedRoot | null> {
  const lines = await readStoredChain(storedChainPath(trustDir)).catch(() => []);
  return lines.length === 0 ? null : (JSON.parse(lines.at(-1)!) as SignedRoot);
}

/** Bounded like the walk that wrote it: at most MAX_STORED_VERSIONS versions of ROOT_JSON_LIMITS bytes. */
async function readStoredChain(file: string): Promise<string[]> {
  const handle = await open(file, "r");
  try {
    const { size } = await handle.stat();
    if (size > MAX_STORED_VERSIONS * ROOT_JSON_LIMITS.maxBytes) throw new Error(`${file} is ${size} bytes, more than ${MAX_STORED_VERSIONS} root versions`);
    return (await handle.readFile("utf8")).split("\n").filter(Boolean).map((line) => `${line}\n`);
  } finally {
    await handle.close();
  }
}

function parseVersion(text: string): number | null {
  const match = /"version":(\d{1,9})[,}]/.exec(text.slice(text.indexOf('"root":')));
  return match ? Number(match[1]) : null;
}
