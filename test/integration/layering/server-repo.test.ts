/**
 * Layering from the server's own APT repository (`apt-ostree-server apt-repo`), with no other
 * source: the base trusts the repository through the keyring compose puts in the image, and the
 * agent adds `<repo URL>/apt` on the image's suite. Real apt-ftparchive, gpg, apt, dpkg, ostree.
 */
import { mkdir, readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assembleLayer, LayeringError } from "../../../device/layering/assemble.ts";
import { removeArchiveKey } from "../../../server/apt-repo/archive-key.ts";
import { ARCHIVE_KEYRING_IN_IMAGE } from "../../../shared/image/archive-keyring.ts";
import { emptyLayerRequest } from "../../../shared/image/layer-metadata.ts";
import { silentLogger } from "../../../shared/log.ts";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { initTlsDir } from "../../../server/tls/tls-dir.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { buildDeb, serveDirectory } from "../../helpers/fake-debs.ts";
import { commitLayeringBase } from "../../helpers/layering-base.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let repo: string;
let serverRepo: string;
let keyDir: string;
let otherKeyDir: string;
let aptEtc: string;
let trusting: string;
let untrusting: string;
let http: Awaited<ReturnType<typeof serveDirectory>>;

async function publish(args: string[]): Promise<void> {
  const result = await execa("node", [SERVER_CLI, "apt-repo", "--repo", serverRepo, "--suite", "bookworm", "--architecture", "amd64", ...args], { reject: false });
  expect(result.exitCode, result.stderr).toBe(0);
}

beforeAll(async () => {
  dir = await makeTempDir("layering-server-repo");
  repo = join(dir, "sysroot-repo");
  serverRepo = join(dir, "server-repo");
  keyDir = join(dir, "apt-key");
  otherKeyDir = join(dir, "other-key");
  await initRepo(repo, "bare");
  const debs = join(dir, "debs");
  await mkdir(debs, { recursive: true });
  const tool = await buildDeb(debs, { name: "srv-tool", version: "1.0", depends: "srv-lib", files: { "/usr/bin/srv-tool": "#!/bin/sh\necho srv-tool\n" } });
  const lib = await buildDeb(debs, { name: "srv-lib", version: "1.0", files: { "/usr/lib/srv-lib/data": "lib\n" } });
  await publish(["--key-dir", keyDir, "--add", tool, "--add", lib]);
  http = await serveDirectory(serverRepo);
  // What compose --apt-keyring puts in the image, as a package here (the test base is made by dpkg).
  const keyring = await buildDeb(debs, { name: "test-archive-keyring", version: "1.0", files: { [`/${ARCHIVE_KEYRING_IN_IMAGE}`]: await readFile(join(keyDir, "archive-keyring.gpg")) } });
  trusting = await commitLayeringBase(repo, dir, "test/trusting", "1", [keyring]);
  untrusting = await commitLayeringBase(repo, dir, "test/untrusting", "1");
  // The device's own APT configuration has no source at all: no Debian mirror is reachable.
  aptEtc = join(dir, "apt-etc");
  await mkdir(join(aptEtc, "sources.list.d"), { recursive: true });
}, 300_000);

afterAll(async () => {
  http?.server.close();
  for (const key of [keyDir, otherKeyDir]) if (key) await removeArchiveKey(key).catch(() => {});
  if (dir && !process.env.KEEP) await removeTree(dir);
});

const serverSource = () => ({ url: `${http.url}apt`, suite: "bookworm", caFile: null });

describe("layering from the server's APT repository", () => {
  it("installs a package and its dependency from <repo>/apt, verified with the image's keyring", async () => {
    const stateDir = join(dir, "state-trusting");
    const assembled = await assembleLayer({ repo, base: trusting, request: { ...emptyLayerRequest(), packages: ["srv-tool"] }, aptEtc, serverSource: serverSource(), stateDir, refresh: true, log: silentLogger() });
    try {
      expect(assembled.outcome.layeredPackages).toEqual(["srv-tool"]);
      expect(assembled.packages.filter((p) => p.name.startsWith("srv-")).map((p) => p.name).sort()).toEqual(["srv-lib", "srv-tool"]);
      expect(await readFile(join(assembled.tree, "usr/bin/srv-tool"), "utf8")).toMatch(/srv-tool/);
    } finally {
      await removeTree(assembled.workDir);
    }
    // The run's own APT configuration is gone with the run.
    expect((await readdir(stateDir)).filter((name) => name.startsWith("etc"))).toEqual([]);
    // APT read the signed InRelease and fetched the index by hash.
    expect(http.requests).toContain("/apt/dists/bookworm/InRelease");
    expect(http.requests.some((path) => path.startsWith("/apt/dists/bookworm/main/binary-amd64/by-hash/SHA256/"))).toBe(true);
  });

  it("offers no server source to a base without the keyring, so the package is not found", async () => {
    const stateDir = join(dir, "state-untrusting");
    const failure = await assembleLayer({ repo, base: untrusting, request: { ...emptyLayerRequest(), packages: ["srv-tool"] }, aptEtc, serverSource: serverSource(), stateDir, refresh: true, log: silentLogger() }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(LayeringError);
    expect(String((failure as Error).message)).toMatch(/Unable to locate package srv-tool/);
  });

  it("over https, trusts the server's certificate through the agent's CA alone", async () => {
    const tls = await initTlsDir(join(dir, "tls"), ["127.0.0.1"]);
    const https = await serveDirectory(serverRepo, { cert: await readFile(tls.cert, "utf8"), key: await readFile(tls.key, "utf8") });
    try {
      const source = { url: `${https.url}apt`, suite: "bookworm", caFile: tls.ca };
      const stateDir = join(dir, "state-https");
      const assembled = await assembleLayer({ repo, base: trusting, request: { ...emptyLayerRequest(), packages: ["srv-tool"] }, aptEtc, serverSource: source, stateDir, refresh: true, log: silentLogger() });
      await removeTree(assembled.workDir);
      expect(assembled.outcome.layeredPackages).toEqual(["srv-tool"]);
      expect(https.requests).toContain("/apt/dists/bookworm/InRelease");
      // Without the CA, the same server is not trusted (the base's public CAs do not name it).
      const untrusted = await assembleLayer({ repo, base: trusting, request: { ...emptyLayerRequest(), packages: ["srv-tool"] }, aptEtc, serverSource: { ...source, caFile: null }, stateDir: join(dir, "state-https-no-ca"), refresh: true, log: silentLogger() }).catch((error: unknown) => error);
      expect(untrusted).toBeInstanceOf(LayeringError);
      expect(String((untrusted as Error).message)).toMatch(/^fetching package indices \(apt-get update\) failed:\nW: Failed to fetch https:\/\/127\.0\.0\.1:\d+\/apt\/dists\/bookworm\/InRelease .*[Cc]ertificate/);
    } finally {
      https.server.close();
    }
  });

  it("refuses the repository when another key signed it (a mirror or server the image does not trust)", async () => {
    await publish(["--key-dir", otherKeyDir, "--add", join(dir, "debs", "srv-tool_1.0_all.deb")]);
    const stateDir = join(dir, "state-other-key");
    const failure = await assembleLayer({ repo, base: trusting, request: { ...emptyLayerRequest(), packages: ["srv-tool"] }, aptEtc, serverSource: serverSource(), stateDir, refresh: true, log: silentLogger() }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(LayeringError);
    expect(String((failure as Error).message)).toMatch(/^fetching package indices \(apt-get update\) failed[\s\S]*NO_PUBKEY/);
  });
});
