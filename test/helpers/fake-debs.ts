/**
 * Small real .deb packages built with dpkg-deb, and a flat APT repository of them served over
 * HTTP, for package layering tests: dependencies, maintainer scripts and bad packages in seconds.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { dirname, join, normalize } from "node:path";
import { execa } from "execa";

export interface FakeDeb {
  name: string;
  version: string;
  architecture?: string;
  depends?: string;
  /** Path inside the package -> content. */
  files?: Record<string, string | Uint8Array>;
  postinst?: string;
}

/** Builds `<name>_<version>_<arch>.deb` in `dir`; returns its path. */
export async function buildDeb(dir: string, deb: FakeDeb): Promise<string> {
  const arch = deb.architecture ?? "all";
  const root = join(dir, `build-${deb.name}-${deb.version}`);
  await mkdir(join(root, "DEBIAN"), { recursive: true });
  const control = [`Package: ${deb.name}`, `Version: ${deb.version}`, `Architecture: ${arch}`, "Maintainer: apt-ostree tests <tests@example.invalid>", ...(deb.depends ? [`Depends: ${deb.depends}`] : []), `Description: ${deb.name}, a package made by the tests`, ""].join("\n");
  await writeFile(join(root, "DEBIAN/control"), control);
  if (deb.postinst) {
    await writeFile(join(root, "DEBIAN/postinst"), deb.postinst);
    await chmod(join(root, "DEBIAN/postinst"), 0o755);
  }
  for (const [path, content] of Object.entries(deb.files ?? {})) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content, { mode: path.includes("/bin/") ? 0o755 : 0o644 });
  }
  const file = join(dir, `${deb.name}_${deb.version}_${arch}.deb`);
  await execa("dpkg-deb", ["--root-owner-group", "-Zgzip", "--build", root, file]);
  return file;
}

/** A flat repository (`deb [trusted=yes] URL ./`) of the packages, with Packages and Release. */
export async function buildFlatRepo(dir: string, debs: FakeDeb[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const deb of debs) await buildDeb(dir, deb);
  const { stdout } = await execa("dpkg-scanpackages", ["--multiversion", ".", "/dev/null"], { cwd: dir });
  await writeFile(join(dir, "Packages"), `${stdout}\n`);
  const packages = await readFile(join(dir, "Packages"));
  const release = ["Origin: apt-ostree-tests", "Label: apt-ostree-tests", `Date: ${new Date().toUTCString()}`, "SHA256:", ` ${createHash("sha256").update(packages).digest("hex")} ${packages.length} Packages`, ""].join("\n");
  await writeFile(join(dir, "Release"), release);
}

/** Serves `dir` over HTTP (or HTTPS with `tls`) on a private loopback port. */
export async function serveDirectory(dir: string, tls?: { cert: string; key: string }): Promise<{ url: string; server: Server; requests: string[] }> {
  const requests: string[] = [];
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
    requests.push(path);
    const file = join(dir, path);
    const info = await stat(file).catch(() => null);
    if (!file.startsWith(dir) || !info?.isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-length": info.size });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  };
  const server: Server = tls ? createHttpsServer(tls, (req, res) => void handler(req, res)) : createServer((req, res) => void handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return { url: `${tls ? "https" : "http"}://127.0.0.1:${address.port}/`, server, requests };
}
