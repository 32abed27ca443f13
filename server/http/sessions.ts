/**
 * Dashboard sessions: a cookie that names its own expiry and carries an HMAC over it, keyed by
 * a secret kept in the data dir together with the admin token. Nothing per session is stored;
 * `revokeAll` replaces the secret, which ends every session at once (and a new admin token
 * does the same).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";

export interface SessionOptions {
  /** Where the secret lives (created 0600 on first start). */
  keyFile: string;
  lifetimeSeconds: number;
  now?: () => Date;
}

export interface IssuedSession {
  value: string;
  maxAgeSeconds: number;
}

export class DashboardSessions {
  private constructor(
    private secret: Buffer,
    private readonly options: SessionOptions,
  ) {}

  static async open(options: SessionOptions): Promise<DashboardSessions> {
    const existing = await readFile(options.keyFile, "utf8").catch(() => null);
    const secret = existing && /^[0-9a-f]{64}\s*$/.test(existing) ? Buffer.from(existing.trim(), "hex") : await writeSecret(options.keyFile);
    return new DashboardSessions(secret, options);
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
    this.secret = await writeSecret(this.options.keyFile);
  }

  private mac(adminToken: string, expires: number): string {
    return createHmac("sha256", Buffer.concat([this.secret, Buffer.from(adminToken)])).update(`apt-ostree dashboard session v2|${expires}`).digest("base64url");
  }

  private now(): number {
    return (this.options.now ?? (() => new Date()))().getTime();
  }
}

async function writeSecret(file: string): Promise<Buffer> {
  const secret = randomBytes(32);
  await writeFileAtomic(file, `${secret.toString("hex")}\n`, 0o600);
  return secret;
}
