/**
 * `apt-ostree-server apt-repo`: a signed APT repository of an image's exact packages (from the
 * compose cache) plus extra .debs, checked with the real apt-get against it over HTTP: signature,
 * by-hash indices, a second publish that keeps the first's readers working, refusals.
 */
import { copyFile, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeImageCommitMetadata } from "../../../shared/image/commit-metadata.ts";
import { commitTree } from "../../../shared/ostree/commit.ts";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { removeArchiveKey } from "../../../server/apt-repo/archive-key.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { buildDeb, serveDirectory } from "../../helpers/fake-debs.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const REF = "debian/bookworm/test-machine/test-image";

let work: string;
let repo: string;
let cache: string;
let keyDir: string;
let http: Awaited<ReturnType<typeof serveDirectory>>;

async function aptRepo(args: string[]) {
  return execa("node", [SERVER_CLI, "apt-repo", "--repo", repo, "--cache", cache, "--key-dir", keyDir, ...args], { reject: false });
}

/** apt-get with a private configuration whose only source is the published repository. */
async function aptClient(name: string, keyring: string) {
  const root = join(work, `client-${name}`);
  for (const dir of ["etc/sources.list.d", "etc/trusted.gpg.d", "etc/preferences.d", "etc/apt.conf.d", "state/lists/partial", "cache/archives/partial"]) await mkdir(join(root, dir), { recursive: true });
  await writeFile(join(root, "status"), "");
  await writeFile(join(root, "etc/sources.list"), `deb [signed-by=${keyring}] ${http.url}apt bookworm main\n`);
  const conf = [`Dir::Etc "${root}/etc/";`, `Dir::State "${root}/state/";`, `Dir::State::status "${root}/status";`, `Dir::Cache "${root}/cache/";`, 'APT::Architecture "amd64";', 'Acquire::Languages "none";', 'APT::Sandbox::User "root";'].join("\n");
  await writeFile(join(root, "apt.conf"), `${conf}\n`);
  return (args: string[]) => execa("apt-get", args, { cwd: root, env: { APT_CONFIG: join(root, "apt.conf"), LC_ALL: "C.UTF-8" }, reject: false });
}

beforeAll(async () => {
  work = await makeTempDir("apt-repo");
  repo = join(work, "repo");
  cache = join(work, "cache");
  keyDir = join(work, "apt-key");
  await initRepo(repo, "archive");
  // The compose cache holds what mmdebstrap downloaded; the image's commit lists what it installed.
  const archives = join(cache, "apt", "debian-bookworm-amd64", "archives");
  await mkdir(archives, { recursive: true });
  const debs = join(work, "debs");
  await mkdir(debs, { recursive: true });
  await copyFile(await buildDeb(debs, { name: "libtest-base", version: "1:2.0-1", architecture: "amd64", files: { "/usr/lib/libtest-base.so": "base\n" } }), join(archives, "libtest-base_1%3a2.0-1_amd64.deb"));
  await copyFile(await buildDeb(debs, { name: "test-tool", version: "1.0", depends: "libtest-base (>= 1:2.0)", files: { "/usr/bin/test-tool": "#!/bin/sh\necho tool\n" } }), join(archives, "test-tool_1.0_all.deb"));
  const tree = join(work, "tree");
  await mkdir(join(tree, "usr/lib"), { recursive: true });
  await writeFile(join(tree, "usr/lib/os-release"), "ID=debian\n");
  const packages = [{ name: "libtest-base", version: "1:2.0-1", architecture: "amd64" }, { name: "test-tool", version: "1.0", architecture: "all" }];
  await commitTree({ repo, tree, branch: REF, subject: "v1", timestamp: 1, ...encodeImageCommitMetadata({ version: "1", sequence: 1, architecture: "amd64", machine: "test-machine", image: "test-image", recipeDigest: "0".repeat(64), packages, kernelArgs: [], sourceDateEpoch: 1, kernel: null }) });
  http = await serveDirectory(repo);
});

afterAll(async () => {
  http?.server.close();
  await removeArchiveKey(keyDir).catch(() => {});
  if (!process.env.KEEP) await removeTree(work);
});

describe("apt-ostree-server apt-repo", () => {
  it("publishes the image's packages and extra .debs, signed, and apt installs from it by hash", async () => {
    const extra = await buildDeb(join(work, "debs"), { name: "extra-tool", version: "0.1", depends: "test-tool", files: { "/usr/bin/extra-tool": "#!/bin/sh\n" } });
    const published = await aptRepo(["--ref", REF, "--add", extra, "--json"]);
    expect(published.exitCode, published.stderr).toBe(0);
    const result = JSON.parse(published.stdout.trim().split("\n").pop()!) as { suites: Array<{ suite: string; packages: number; added: number }>; keyring: string; fingerprint: string };
    expect(result.suites).toEqual([expect.objectContaining({ suite: "bookworm", packages: 3, added: 3 })]);
    expect(result.fingerprint).toMatch(/^[0-9A-F]{40}$/);
    // Debian's pool layout; the epoch escaped as apt escapes it.
    expect(await readdir(join(repo, "apt/pool/bookworm/main/libt/libtest-base"))).toEqual(["libtest-base_1%3a2.0-1_amd64.deb"]);
    const release = await readFile(join(repo, "apt/dists/bookworm/Release"), "utf8");
    expect(release).toMatch(/^Acquire-By-Hash: yes$/m);
    expect(release).not.toMatch(/ Release$/m);
    expect(await readFile(join(repo, "apt/dists/bookworm/InRelease"), "utf8")).toMatch(/^-----BEGIN PGP SIGNED MESSAGE-----/);

    const apt = await aptClient("good", result.keyring);
    const update = await apt(["update"]);
    expect(update.exitCode, update.stderr).toBe(0);
    expect(update.stderr).not.toMatch(/^[WE]:/m);
    expect(http.requests.some((path) => path.includes("/by-hash/SHA256/"))).toBe(true);
    const simulate = await apt(["install", "--simulate", "extra-tool"]);
    expect(simulate.exitCode, simulate.stderr).toBe(0);
    expect(simulate.stdout).toMatch(/^Inst libtest-base \(1:2\.0-1 apt-ostree:bookworm \[amd64\]\)/m);
    expect(simulate.stdout).toMatch(/^Inst extra-tool \(0\.1 /m);
    const download = await apt(["download", "libtest-base"]);
    expect(download.exitCode, download.stderr).toBe(0);
    // The epoch's ':' is escaped in the downloaded file's name, as in the pool.
    expect(await readdir(join(work, "client-good"))).toContain("libtest-base_1%3a2.0-1_amd64.deb");
  });

  it("is refused by apt with another key, and when an index is tampered with", async () => {
    const otherKey = join(work, "other-key");
    const other = await execa("node", [SERVER_CLI, "apt-repo", "--repo", join(work, "scratch-repo"), "--key-dir", otherKey, "--suite", "bookworm", "--architecture", "amd64", "--add", join(work, "debs", "test-tool_1.0_all.deb")], { reject: false });
    expect(other.exitCode, other.stderr).toBe(0);
    const wrong = await aptClient("wrong-key", join(otherKey, "archive-keyring.gpg"));
    const refused = await wrong(["update"]);
    expect(`${refused.stdout}\n${refused.stderr}`).toMatch(/NO_PUBKEY|not signed|is not signed/);
    await removeArchiveKey(otherKey);

    const index = join(repo, "apt/dists/bookworm/main/binary-amd64");
    for (const file of await readdir(join(index, "by-hash/SHA256"))) await writeFile(join(index, "by-hash/SHA256", file), "Package: evil\nVersion: 9\n");
    await writeFile(join(index, "Packages"), "Package: evil\nVersion: 9\n");
    await execa("sh", ["-c", `printf 'Package: evil\nVersion: 9\n' | gzip > '${join(index, "Packages.gz")}'`]);
    const tampered = await aptClient("tampered", join(keyDir, "archive-keyring.gpg"));
    const failed = await tampered(["update"]);
    expect(`${failed.stdout}\n${failed.stderr}`).toMatch(/Hash Sum mismatch|File has unexpected size/);
    const policy = await tampered(["install", "--simulate", "evil"]);
    expect(policy.exitCode).not.toBe(0);
    // The next test's republish writes the indices anew.
    await writeFile(join(index, "Packages"), "");
    for (const file of await readdir(join(index, "by-hash/SHA256"))) await execa("rm", ["-f", join(index, "by-hash/SHA256", file)]);
  });

  it("republishes with a new version added, keeps older versions, and refuses other bytes under a published version", async () => {
    await mkdir(join(work, "debs-2"), { recursive: true });
    const v2 = await buildDeb(join(work, "debs-2"), { name: "extra-tool", version: "0.2", files: { "/usr/bin/extra-tool": "#!/bin/sh\necho 2\n" } });
    const again = await aptRepo(["--ref", REF, "--add", v2, "--json"]);
    expect(again.exitCode, again.stderr).toBe(0);
    const result = JSON.parse(again.stdout.trim().split("\n").pop()!) as { suites: Array<{ packages: number; added: number }> };
    expect(result.suites[0]).toMatchObject({ packages: 4, added: 1 });
    const apt = await aptClient("second", join(keyDir, "archive-keyring.gpg"));
    expect((await apt(["update"])).exitCode).toBe(0);
    const policy = await execa("apt-cache", ["policy", "extra-tool"], { env: { APT_CONFIG: join(work, "client-second", "apt.conf") } });
    expect(policy.stdout).toMatch(/Candidate: 0\.2/);
    expect(policy.stdout).toMatch(/ 0\.1 /);

    await mkdir(join(work, "debs-3"), { recursive: true });
    const forged = await buildDeb(join(work, "debs-3"), { name: "extra-tool", version: "0.2", files: { "/usr/bin/extra-tool": "#!/bin/sh\necho other\n" } });
    const refused = await aptRepo(["--ref", REF, "--add", forged]);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/extra-tool 0\.2 \(all\) is already published in bookworm with other contents/);
  });

  it("names the packages the compose cache lost, and publishes without them only when told", async () => {
    await execa("rm", [join(cache, "apt/debian-bookworm-amd64/archives/test-tool_1.0_all.deb")]);
    const refused = await aptRepo(["--ref", REF]);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/1 package\(s\) of the image\(s\) are not in the compose cache[\s\S]*test-tool_1\.0_all\.deb[\s\S]*--allow-missing/);
    const allowed = await aptRepo(["--ref", REF, "--allow-missing"]);
    expect(allowed.exitCode, allowed.stderr).toBe(0);
    expect(allowed.stdout).toMatch(/1 package\(s\) left out/);
  });

  it("refuses a file that is not a Debian package, and a ref with no compose cache", async () => {
    await writeFile(join(work, "not.deb"), "hello");
    const notDeb = await aptRepo(["--ref", REF, "--allow-missing", "--add", join(work, "not.deb")]);
    expect(notDeb.exitCode).not.toBe(0);
    expect(notDeb.stderr).toMatch(/not\.deb is not a Debian package/);
    const noCache = await execa("node", [SERVER_CLI, "apt-repo", "--repo", repo, "--cache", join(work, "empty-cache"), "--key-dir", keyDir, "--ref", REF], { reject: false });
    expect(noCache.exitCode).not.toBe(0);
    expect(noCache.stderr).toMatch(/the compose cache has no packages for debian bookworm amd64/);
  });
});
