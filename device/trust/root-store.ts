/**
 * The device's chain of roots (docs/trust.md): the image's first root, read-only in /usr, and
 * the newest one accepted since, in the state directory. A walk fetches version N+1 from the
 * server until there is none, verifies each against the one before, and persists the newest.
 */
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { mkdir } from "node:fs/promises";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import type { Logger } from "../../shared/log.ts";
import { formatPublicKey } from "../../shared/sign/keys.ts";
import { checkRootFresh, serializeSignedRoot, signersFor, verifyNextRoot, verifyRootSelf, type Root, type SignedRoot } from "../../shared/trust/root.ts";
import type { RoleName, Signers } from "../../shared/trust/signers.ts";
import type { DeviceTrust } from "./device-trust.ts";

/** Most versions one walk takes: a device that slept through more catches up on its next check. */
export const MAX_ROOT_STEPS = 32;

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

  private constructor(
    private readonly options: RootStoreOptions,
    private current: SignedRoot,
  ) {}

  /** The newer of the image's root and the stored one; a stored root that does not verify is set aside with a warning. */
  static async open(options: RootStoreOptions): Promise<RootStore> {
    const shipped = verifyRootSelf(await readFile(options.shippedRoot), options.shippedRoot);
    const storedFile = storedRootPath(options.trustDir);
    let stored: SignedRoot | null = null;
    try {
      stored = verifyRootSelf(await readFile(storedFile), storedFile);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        options.log.warn({ event: "trust.stored-root.unusable", file: storedFile, err: error }, `ignoring the stored root: ${(error as Error).message}; walking again from the image's root`);
      }
    }
    const store = new RootStore(options, stored && stored.root.version >= shipped.root.version ? stored : shipped);
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
      }
    } finally {
      if (this.current.root.version !== from) await this.persist(from);
    }
    return this.current.root.version !== from;
  }

  private async persist(from: number): Promise<void> {
    await mkdir(this.options.trustDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(storedRootPath(this.options.trustDir), serializeSignedRoot(this.current));
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

export function storedRootPath(trustDir: string): string {
  return join(trustDir, "root.json");
}
