import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCaCertificate } from "../../../server/tls/ca-file.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir("tls-init");
});
afterAll(async () => removeTree(dir));

const run = (args: string[]) => execa(process.execPath, [SERVER_CLI, "tls", "init", ...args], { reject: false });
const mode = async (file: string) => (await stat(file)).mode & 0o777;

describe("apt-ostree-server tls init", () => {
  it("writes a CA and a server certificate for localhost and 127.0.0.1 by default, keys 0600", async () => {
    const out = join(dir, "default");
    const result = await run(["--out", out, "--json"]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ dir: out, ca: join(out, "ca.pem"), caKey: join(out, "ca.key"), cert: join(out, "server.pem"), key: join(out, "server.key"), hosts: ["localhost", "127.0.0.1"] });
    expect(await mode(join(out, "ca.key"))).toBe(0o600);
    expect(await mode(join(out, "server.key"))).toBe(0o600);
    const ca = new X509Certificate(await readFile(join(out, "ca.pem")));
    const server = new X509Certificate(await readFile(join(out, "server.pem")));
    expect(ca.ca).toBe(true);
    expect(server.ca).toBe(false);
    expect(server.checkIssued(ca)).toBe(true);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1");
    expect(server.checkHost("localhost")).toBe("localhost");
    expect(server.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(server.checkHost("example.org")).toBeUndefined();
    // About two years for the server, about ten for the CA.
    const years = (cert: X509Certificate) => (Date.parse(cert.validTo) - Date.now()) / (365 * 86_400_000);
    expect(years(server)).toBeGreaterThan(1.9);
    expect(years(server)).toBeLessThan(2.1);
    expect(years(ca)).toBeGreaterThan(9.9);
    expect(createPrivateKey(await readFile(join(out, "server.key"))).asymmetricKeyDetails).toEqual({ namedCurve: "prime256v1" });
    expect(server.checkPrivateKey(createPrivateKey(await readFile(join(out, "server.key"))))).toBe(true);
  });

  it("puts DNS names and IP addresses given with --host in their SANs", async () => {
    const out = join(dir, "hosts");
    const result = await run(["--out", out, "--host", "Server.Example", "--host", "10.0.2.2", "--host", "::1"]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toContain(`Serve with: apt-ostree-server serve --tls-dir ${out}`);
    const server = new X509Certificate(await readFile(join(out, "server.pem")));
    expect(server.subjectAltName).toBe("DNS:server.example, IP Address:10.0.2.2, IP Address:0:0:0:0:0:0:0:1");
    expect(server.checkIP("10.0.2.2")).toBe("10.0.2.2");
  });

  it("refuses to replace an existing CA without --force, and replaces it with it", async () => {
    const out = join(dir, "default");
    const before = await readFile(join(out, "ca.pem"), "utf8");
    const refused = await run(["--out", out]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr.trim()).toBe(`error: ${join(out, "ca.pem")} already exists; devices pin this CA, so it is not replaced (pass --force to make a new CA and re-image or reconfigure every device)`);
    expect(await readFile(join(out, "ca.pem"), "utf8")).toBe(before);
    expect((await run(["--out", out, "--force"])).exitCode).toBe(0);
    expect(await readFile(join(out, "ca.pem"), "utf8")).not.toBe(before);
  });

  it("is what image build --ca takes: a CA certificate, not the server's own or another file", async () => {
    const out = join(dir, "default");
    expect(await readCaCertificate(join(out, "ca.pem"))).toBe(await readFile(join(out, "ca.pem"), "utf8"));
    await expect(readCaCertificate(join(out, "server.pem"))).rejects.toThrow(`${join(out, "server.pem")} is not a CA certificate (it is CN=localhost's own); pass the ca.pem beside it`);
    await expect(readCaCertificate(join(out, "server.key"))).rejects.toThrow(`${join(out, "server.key")} is not a PEM certificate`);
    await expect(readCaCertificate(join(out, "missing.pem"))).rejects.toThrow(`cannot read the CA certificate ${join(out, "missing.pem")}: ENOENT`);
    const later = new Date(Date.now() + 11 * 365 * 86_400_000);
    await expect(readCaCertificate(join(out, "ca.pem"), later)).rejects.toThrow(/expired on/);
    // A TLS URL on a disk without a pinned CA would leave the device unable to connect: refused before any disk work.
    const build = await execa(process.execPath, [SERVER_CLI, "image", "build", "--ref", "r", "--out", join(dir, "disk.img"), "--server", "https://10.0.2.2:8080"], { reject: false });
    expect(build.exitCode).toBe(2);
    expect(build.stderr).toContain("--server https://10.0.2.2:8080 needs --ca FILE: the device trusts only the CA its image pins");
  });

  it("refuses a host that is neither a DNS name nor an IP as a usage error", async () => {
    const result = await run(["--out", join(dir, "bad"), "--host", "not a name"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("--host 'not a name' is neither a DNS name nor an IP address");
    await expect(stat(join(dir, "bad"))).rejects.toThrow();
  });
});
