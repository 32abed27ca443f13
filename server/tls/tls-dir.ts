/**
 * The server's TLS directory: ca.pem and ca.key (the private CA; the key issues device client
 * certificates later), server.pem and server.key (what serve presents). Keys are written 0600,
 * each file atomically; `initTlsDir` refuses to replace an existing CA unless forced, since every
 * device pins it.
 */
import { mkdir, readFile, stat } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { AptOstreeError } from "../../shared/errors.ts";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import type { Logger } from "../../shared/log.ts";
import { normalizeHostName } from "./host-name.ts";

export const TLS_FILES = { ca: "ca.pem", caKey: "ca.key", cert: "server.pem", key: "server.key" } as const;
export const DEFAULT_TLS_HOSTS = ["localhost", "127.0.0.1"];

export class TlsDirError extends AptOstreeError {
  constructor(code: "E_TLS_EXISTS" | "E_TLS_FILES", message: string, cause?: unknown) {
    super(code, message, { cause });
  }
}

export interface TlsDirPaths {
  dir: string;
  ca: string;
  caKey: string;
  cert: string;
  key: string;
}

export function tlsDirPaths(dir: string): TlsDirPaths {
  return { dir, ca: join(dir, TLS_FILES.ca), caKey: join(dir, TLS_FILES.caKey), cert: join(dir, TLS_FILES.cert), key: join(dir, TLS_FILES.key) };
}

/** What serve needs to listen with TLS: its certificate chain and key (PEM), and where the CA is. */
export interface ServerTls {
  cert: string;
  key: string;
  caFile: string;
}

export interface TlsInitResult extends TlsDirPaths {
  hosts: string[];
}

/** Makes a CA and a server certificate for `hosts` in `dir`. The certificate code is loaded only here. */
export async function initTlsDir(dir: string, hosts: string[], options: { force?: boolean; now?: Date } = {}): Promise<TlsInitResult> {
  const paths = tlsDirPaths(dir);
  if (!options.force) {
    for (const file of [paths.ca, paths.caKey, paths.cert, paths.key]) {
      if (await stat(file).catch(() => null)) throw new TlsDirError("E_TLS_EXISTS", `${file} already exists; devices pin this CA, so it is not replaced (pass --force to make a new CA and re-image or reconfigure every device)`);
    }
  }
  const { createCa, issueServerCertificate } = await import("./certificates.ts");
  const ca = await createCa({ commonName: `apt-ostree CA ${hostname()}`, now: options.now });
  const server = await issueServerCertificate(ca, hosts, { now: options.now });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(paths.caKey, ca.key, 0o600);
  await writeFileAtomic(paths.key, server.key, 0o600);
  await writeFileAtomic(paths.ca, ca.certificate, 0o644);
  await writeFileAtomic(paths.cert, server.certificate, 0o644);
  return { ...paths, hosts: [...new Set(hosts)] };
}

async function readPem(file: string, what: string, dir: string): Promise<string> {
  const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new TlsDirError("E_TLS_FILES", `cannot read ${what} ${file}: ${error.code === "ENOENT" ? "no such file" : error.message} (make the directory with 'apt-ostree-server tls init --out ${dir}', or put your own ${Object.values(TLS_FILES).filter((f) => f !== TLS_FILES.caKey).join(", ")} there)`, error);
  });
  if (!text.includes("-----BEGIN ")) throw new TlsDirError("E_TLS_FILES", `${file} is not PEM (${what})`);
  return text;
}

/** The certificate and key serve presents, read from `dir`; ca.key is not needed for that. */
export async function readServerTls(dir: string): Promise<ServerTls> {
  const paths = tlsDirPaths(dir);
  const [cert, key] = [await readPem(paths.cert, "the server certificate", dir), await readPem(paths.key, "the server key", dir)];
  await readPem(paths.ca, "the CA certificate", dir);
  return { cert, key, caFile: paths.ca };
}

/**
 * The server's TLS files in `dir`, made first when the directory has none (serve's default):
 * for localhost, 127.0.0.1, this machine's host name and `extraHosts`.
 */
export async function ensureServerTls(dir: string, extraHosts: string[], log: Logger): Promise<ServerTls> {
  const paths = tlsDirPaths(dir);
  if (!(await stat(paths.cert).catch(() => null))) {
    // A host name a certificate cannot carry (an underscore) is left out rather than failing the start.
    const hosts = [...new Set([...DEFAULT_TLS_HOSTS, hostname(), ...extraHosts].map(normalizeHostName).filter((name): name is string => name !== null))];
    await initTlsDir(dir, hosts);
    log.info({ event: "serve.tls.created", dir, hosts }, `made a CA and a server certificate for ${hosts.join(", ")} in ${dir}`);
  }
  return readServerTls(dir);
}
