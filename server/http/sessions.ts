/**
 * Dashboard sessions: a cookie that names its own expiry and carries an HMAC over it, keyed by
 * a secret kept in the data dir together with the admin token. Nothing per session is stored;
 * `revokeAll` replaces the secret, which ends every session at once (and a new admin token
 * does the same). Instances on a shared database keep the secret there instead (`shared`), so a
 * session works on each of them; a revocation on one reaches the others within `refreshSeconds`.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";

/** Where instances that share a database keep the secret (store-postgres.ts `secrets`). */
export interface SharedSecret {
  /** The stored secret, or `fresh` stored now when there is none (the first instance's wins). */
  getOrCreate(fresh: string): Promise<string>;
  replace(value: string): Promise<void>;
}

export interface SessionOptions {
  /** Where the secret lives (created 0600 on first start), unless `shared`. */
  keyFile: string;
  shared?: SharedSecret;
  /** How often a shared secret is read again (default 10 s). */
  refreshSeconds?: number;
  lifetimeSeconds: number;
  now?: () => Date;
}

export interface IssuedSession {
  value: string;
  maxAgeSeconds: number;
}

export class DashboardSessions {
  private refreshedAt: number;

  private constructor(
    private secret: Buffer,
    private readonly options: SessionOptions,
  ) {
    this.refreshedAt = this.now();
  }

  static async open(options: SessionOptions): Promise<DashboardSessions> {
    if (options.shared) return new DashboardSessions(parseSecret(await options.shared.getOrCreate(randomBytes(32).toString("hex"))), options);
    const existing = await readFile(options.keyFile, "utf8").catch(() => null);
    const secret = existing && /^[0-9a-f]{64}\s*$/.test(existing) ? Buffer.from(existing.trim(), "hex") : await writeSecret(options.keyFile);
    return new DashboardSessions(secret, options);
  }

  /** Reads a shared secret again when it is older than `refreshSeconds`: another instance may have revoked every session. */
  async refresh(): Promise<void> {
    const shared = this.options.shared;
    if (!shared || this.now() - this.refreshedAt < (this.options.refreshSeconds ?? 10) * 1000) return;
    this.refreshedAt = this.now();
    this.secret = parseSecret(await shared.getOrCreate(randomBytes(32).toString("hex")));
  }

  issue(adminToken: string): IssuedSession {
    const expires = Math.floor(this.now() / 1000) + this.options.lifetimeSeconds;
    return { value: `v2.${expires}.${this.mac(adminToken, expires)}`, maxAgeSeconds: this.options.lifetimeSeconds };
  }

  /** True for a cookie this server issued with the current secret and token that has not expired. */
  valid(cookie: string, adminToken: string): boolean {
    const match = /^v2\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(cookie);
    if (!match) return false;
    const expires = Number(match[1]);
    if (expires * 1000 <= this.now()) return false;
    const expected = Buffer.from(this.mac(adminToken, expires));
    const given = Buffer.from(match[2]!);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** Ends every session: the secret they were issued under is replaced. */
  async revokeAll(): Promise<void> {
    if (!this.options.shared) {
      this.secret = await writeSecret(this.options.keyFile);
      return;
    }
    const secret = randomBytes(32);
    await this.options.shared.replace(secret.toString("hex"));
    this.secret = secret;
  }

  private mac(adminToken: string, expires: number): string {
    return createHmac("sha256", Buffer.concat([this.secret, Buffer.from(adminToken)])).update(`apt-ostree dashboard session v2|${expires}`).digest("base64url");
  }

  private now(): number {
    return (this.options.now ?? (() => new Date()))().getTime();
  }
}

function parseSecret(hex: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error("the shared dashboard session secret is not 64 hex digits");
  return Buffer.from(hex, "hex");
}

async function writeSecret(file: string): Promise<Buffer> {
  const secret = randomBytes(32);
  await writeFileAtomic(file, `${secret.toString("hex")}\n`, 0o600);
  return secret;
}
