/**
 * Package layering's tree assembly and commit on a real Debian base (bookworm's apt variant,
 * converted to the OSTree layout as compose does), with the real ostree, apt and dpkg, and
 * packages from a flat repository served over HTTP.
 */
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Server } from "node:http";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assembleLayer, LAYERED_SYSUSERS_CONF, LAYERED_TMPFILES_CONF, LayeringError } from "../../../device/layering/assemble.ts";
import { commitLayer, LAYERED_REF } from "../../../device/layering/commit.ts";
import { carryLayer, requestToCarry } from "../../../device/layering/carry.ts";
import type { Deployment } from "../../../device/sysroot/deployments.ts";
import { readImageCommitInfo } from "../../../shared/image/commit-metadata.ts";
import { emptyLayerRequest, readLayerInfo, type LayerRequest, type LocalPackage } from "../../../shared/image/layer-metadata.ts";
import { silentLogger } from "../../../shared/log.ts";
import { parseCommitObject } from "../../../shared/ostree/commit-object.ts";
import { initRepo, readCommitObject, resolveRef } from "../../../shared/ostree/repo.ts";
import { buildDeb, buildFlatRepo, serveDirectory, type FakeDeb } from "../../helpers/fake-debs.ts";
import { commitLayeringBase } from "../../helpers/layering-base.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const TOOL: FakeDeb = {
  name: "fz-tool",
  version: "1.0",
  depends: "fz-lib",
  files: { "/usr/bin/fz-tool": "#!/bin/sh\necho fz-tool\n" },
  // What real postinsts do: add a system user, keep state in /var, and (badly) append to a file
  // the base ships, which in the checkout is a hardlink to the repo's object.
  postinst: "#!/bin/sh\nset -e\nadduser --system --group --home /var/lib/fz-tool fztool >/dev/null\nmkdir -p /var/lib/fz-tool\necho state > /var/lib/fz-tool/state\necho '# appended by fz-tool' >> /usr/share/base-files/motd\n",
};
const LIB: FakeDeb = { name: "fz-lib", version: "1.0", files: { "/usr/lib/fz-lib/data": "lib data\n" } };
const PACKAGES: FakeDeb[] = [
  TOOL,
  LIB,
  { name: "fz-opt", version: "1.0", files: { "/opt/fz/thing": "x\n" } },
  { name: "fz-fail", version: "1.0", postinst: "#!/bin/sh\necho 'fz-fail: cannot configure without a running daemon' >&2\nexit 1\n" },
  { name: "linux-image-fz", version: "1.0", files: { "/usr/share/doc/linux-image-fz/x": "x\n" } },
  { name: "fz-extra", version: "2.0", files: { "/usr/share/fz-extra/v": "2\n" } },
  { name: "fz-wants-new-extra", version: "1.0", depends: "fz-extra (>= 2.0)" },
  { name: "fz-wants-old-extra", version: "1.0", depends: "fz-extra (<< 2.0)" },
];

let dir: string;
let repo: string;
let base: string;
let stateDir: string;
let aptEtc: string;
let http: { url: string; server: Server; requests: string[] };

beforeAll(async () => {
  dir = await makeTempDir("layering-assemble");
  repo = join(dir, "repo");
  await initRepo(repo, "bare");
  // The base carries fz-extra 1.0, a package nothing depends on: something to remove and replace.
  const extraV1 = await buildDeb(join(dir, "base-debs"), { name: "fz-extra", version: "1.0", files: { "/usr/share/fz-extra/v": "1\n" } });
  // And a pair where one needs the other: removing the needed one would take both.
  const needed = await buildDeb(join(dir, "base-debs"), { name: "fz-needed", version: "1.0" });
  const needing = await buildDeb(join(dir, "base-debs"), { name: "fz-needing", version: "1.0", depends: "fz-needed" });
  base = await commitLayeringBase(repo, dir, "test/base", "1", [extraV1, needed, needing]);
  await buildFlatRepo(join(dir, "apt-repo"), PACKAGES);
  http = await serveDirectory(join(dir, "apt-repo"));
  aptEtc = join(dir, "apt-etc");
  await mkdir(join(aptEtc, "sources.list.d"), { recursive: true });
  await mkdir(join(aptEtc, "trusted.gpg.d"), { recursive: true });
  await writeFile(join(aptEtc, "sources.list"), `deb [trusted=yes] ${http.url} ./\n`);
  stateDir = join(dir, "state");
}, 300_000);

afterAll(async () => {
  http?.server.close();
  if (dir) await removeTree(dir);
});

const request = (extra: Partial<LayerRequest>): LayerRequest => ({ ...emptyLayerRequest(), ...extra });

async function build(layer: LayerRequest, refresh = true) {
  const assembled = await assembleLayer({ repo, base, request: layer, aptEtc, stateDir, refresh, log: silentLogger() });
  try {
    const commit = await commitLayer({ repo, base, tree: assembled.tree, request: layer, outcome: assembled.outcome, packages: assembled.packages });
    return { commit, assembled };
  } finally {
    await removeTree(assembled.workDir);
  }
}

async function fileIn(commit: string, path: string): Promise<string> {
  return (await execa("ostree", ["cat", `--repo=${repo}`, commit, path])).stdout;
}

async function localDeb(deb: FakeDeb): Promise<LocalPackage> {
  const file = await buildDeb(join(dir, "local-build"), deb);
  const sha256 = createHash("sha256").update(await readFile(file)).digest("hex");
  await mkdir(join(stateDir, "local"), { recursive: true });
  await copyFile(file, join(stateDir, "local", `${sha256}.deb`));
  return { name: deb.name, version: deb.version, architecture: deb.architecture ?? "all", sha256 };
}

describe("assembling a layered tree", () => {
  it("installs a package with its dependency on the base, runs its script confined, and commits it on top of the base", async () => {
    const layer = request({ packages: ["fz-tool"] });
    const { commit, assembled } = await build(layer);
    expect(assembled.outcome).toEqual({ layeredPackages: ["fz-tool"], removedBasePackages: [], replacedBasePackages: [] });

    const object = parseCommitObject(await readCommitObject(repo, commit));
    expect(object.parent).toBe(base);
    expect(readLayerInfo(object)).toMatchObject({ base, request: layer, outcome: assembled.outcome });
    const info = readImageCommitInfo(object, "the layered commit");
    expect(info.version).toBe("1");
    expect(info.packages.filter((p) => p.name.startsWith("fz-"))).toEqual([
      { name: "fz-extra", version: "1.0", architecture: "all" },
      { name: "fz-lib", version: "1.0", architecture: "all" },
      { name: "fz-needed", version: "1.0", architecture: "all" },
      { name: "fz-needing", version: "1.0", architecture: "all" },
      { name: "fz-tool", version: "1.0", architecture: "all" },
    ]);
    expect(await resolveRef(repo, LAYERED_REF)).toBe(commit);

    expect(await fileIn(commit, "/usr/bin/fz-tool")).toContain("echo fz-tool");
    expect(await fileIn(commit, "/usr/lib/fz-lib/data")).toBe("lib data");
    // The OSTree layout again: /etc in /usr/etc, dpkg's database under /usr, /var empty.
    expect(await fileIn(commit, "/usr/etc/passwd")).toMatch(/^fztool:x:\d+:\d+::\/var\/lib\/fz-tool:/m);
    expect(await fileIn(commit, "/usr/share/dpkg/database/status")).toContain("Package: fz-tool");
    expect((await execa("ostree", ["ls", `--repo=${repo}`, commit, "/var"])).stdout.trim().split("\n")).toHaveLength(1);
    expect((await execa("ostree", ["ls", `--repo=${repo}`, commit, "/usr/sbin/policy-rc.d"], { reject: false })).exitCode).not.toBe(0);
    // The script's /var state becomes factory content created at boot, its user a sysusers.d line.
    expect(await fileIn(commit, "/usr/share/factory/var/lib/fz-tool/state")).toBe("state");
    const tmpfiles = await fileIn(commit, `/${LAYERED_TMPFILES_CONF}`);
    expect(tmpfiles).toMatch(/^d \/var\/lib\/fz-tool 0755 \d+ \d+ -$/m);
    expect(tmpfiles).toMatch(/^C \/var\/lib\/fz-tool\/state - - - -$/m);
    expect(await fileIn(commit, `/${LAYERED_SYSUSERS_CONF}`)).toMatch(/^u fztool \d+:\d+ - \/var\/lib\/fz-tool \/usr\/sbin\/nologin$/m);

    // resolv.conf was the device's for the run, and is the base's again in the commit.
    const resolv = async (rev: string) => (await execa("ostree", ["ls", "-C", `--repo=${repo}`, rev, "/usr/etc/resolv.conf"], { reject: false })).stdout.split(/\s+/).slice(-2).join(" ");
    expect(await resolv(commit)).toBe(await resolv(base));
    // The append went to a copy: the layered tree has it, the base and the repo's objects do not.
    expect(await fileIn(commit, "/usr/share/base-files/motd")).toContain("appended by fz-tool");
    expect(await fileIn(base, "/usr/share/base-files/motd")).not.toContain("appended by fz-tool");
    const fsck = await execa("ostree", ["fsck", `--repo=${repo}`], { reject: false, all: true });
    expect(fsck.all).not.toMatch(/corrupt/i);
    expect(fsck.exitCode).toBe(0);
    // Nothing is left in the repo's tmp/.
    expect((await readdir(join(repo, "tmp"))).filter((n) => n.startsWith("apt-ostree-layer-"))).toEqual([]);
  }, 180_000);

  it("removes and replaces base packages by override, and carries a local .deb", async () => {
    const replacement = await localDeb({ name: "fz-extra", version: "3.0", files: { "/usr/share/fz-extra/v": "3\n" } });
    const local = await localDeb({ name: "fz-local", version: "0.1", files: { "/usr/share/fz-local/here": "yes\n" } });
    const replaced = await build(request({ baseLocalReplacements: [replacement], localPackages: [local] }));
    expect(replaced.assembled.outcome).toEqual({
      layeredPackages: ["fz-local"],
      removedBasePackages: [],
      replacedBasePackages: [{ from: { name: "fz-extra", version: "1.0", architecture: "all" }, to: { name: "fz-extra", version: "3.0", architecture: "all" } }],
    });
    expect(await fileIn(replaced.commit, "/usr/share/fz-extra/v")).toBe("3");
    expect(await fileIn(replaced.commit, "/usr/share/fz-local/here")).toBe("yes");

    const removed = await build(request({ baseRemovals: ["fz-extra"] }));
    expect(removed.assembled.outcome.removedBasePackages).toEqual([{ name: "fz-extra", version: "1.0", architecture: "all" }]);
    expect((await execa("ostree", ["ls", `--repo=${repo}`, removed.commit, "/usr/share/fz-extra/v"], { reject: false })).exitCode).not.toBe(0);
  }, 180_000);

  it.each([
    ["a package that ships files in /opt", request({ packages: ["fz-opt"] }), /cannot layer 'fz-opt': it installs \/opt\/fz\/thing, and \/opt lives in \/var/],
    ["a package whose script fails, with its output", request({ packages: ["fz-fail"] }), /fz-fail: cannot configure without a running daemon/],
    ["a kernel", request({ packages: ["linux-image-fz"] }), /cannot install 'linux-image-fz' by layering: the kernel comes with the base image/],
    ["a package that would upgrade a base package", request({ packages: ["fz-wants-new-extra"] }), /would change base packages \(fz-extra 1\.0 -> 2\.0\)/],
    ["a removal that takes other base packages with it", request({ baseRemovals: ["fz-needed"] }), /removing fz-needed would also remove base packages fz-needing/],
    ["a removal of a core package", request({ baseRemovals: ["debian-archive-keyring"] }), /debian-archive-keyring/],
    ["a package no source has", request({ packages: ["fz-nowhere"] }), /Unable to locate package fz-nowhere/],
  ])("refuses %s with the reason, and commits nothing", async (_what, layer, reason) => {
    const before = await resolveRef(repo, LAYERED_REF);
    const attempt = assembleLayer({ repo, base, request: layer, aptEtc, stateDir, refresh: true, log: silentLogger() });
    await expect(attempt).rejects.toThrow(LayeringError);
    await expect(assembleLayer({ repo, base, request: layer, aptEtc, stateDir, refresh: true, log: silentLogger() })).rejects.toThrow(reason);
    expect(await resolveRef(repo, LAYERED_REF)).toBe(before);
    expect((await readdir(join(repo, "tmp"))).filter((n) => n.startsWith("apt-ostree-layer-"))).toEqual([]);
  }, 120_000);
});

describe("carrying the layering onto a new base", () => {
  let base2: string;
  beforeAll(async () => {
    // The next release: fz-extra went to 3.0 in the base.
    const extraV3 = await buildDeb(join(dir, "base2-debs"), { name: "fz-extra", version: "3.0", files: { "/usr/share/fz-extra/v": "3\n" } });
    base2 = await commitLayeringBase(repo, dir, "test/base", "2", [extraV3]);
  }, 300_000);

  const deployed = (checksum: string, baseChecksum: string): Deployment[] => [
    { id: `debian-${checksum}.0`, osname: "debian", checksum, base: baseChecksum, serial: 0, version: "1", origin: "test/base", timestamp: 1, booted: true, staged: false, pending: false, rollback: false, pinned: false },
  ];

  it("builds the default deployment's request again on the new base", async () => {
    const layer = request({ packages: ["fz-tool"] });
    const { commit } = await build(layer);
    const carried = await requestToCarry(repo, deployed(commit, base));
    expect(carried).toEqual(layer);
    const { commit: next, layered } = await carryLayer({ repo, base: base2, request: carried!, aptEtc, stateDir, log: silentLogger() });
    expect(layered).toEqual({ packages: ["fz-tool"], removed: [], replaced: [] });
    const object = parseCommitObject(await readCommitObject(repo, next));
    expect(object.parent).toBe(base2);
    expect(readLayerInfo(object)).toMatchObject({ base: base2, request: layer, outcome: { layeredPackages: ["fz-tool"] } });
    expect(readImageCommitInfo(object, "carried").version).toBe("2");
    expect(await fileIn(next, "/usr/bin/fz-tool")).toContain("echo fz-tool");
    expect(await fileIn(next, "/usr/share/fz-extra/v")).toBe("3");
    // A plain deployment has nothing to carry.
    expect(await requestToCarry(repo, deployed(base, base))).toBeNull();
  }, 180_000);

  it("fails with the reason when the request no longer fits the new base", async () => {
    const layer = request({ packages: ["fz-wants-old-extra"] });
    const { commit } = await build(layer);
    const carried = await requestToCarry(repo, deployed(commit, base));
    await expect(carryLayer({ repo, base: base2, request: carried!, aptEtc, stateDir, log: silentLogger() })).rejects.toThrow(/fz-wants-old-extra/);
    expect((await readdir(join(repo, "tmp"))).filter((n) => n.startsWith("apt-ostree-layer-"))).toEqual([]);
  }, 180_000);
});
