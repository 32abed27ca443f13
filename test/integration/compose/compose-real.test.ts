/**
 * Real composes from Debian's packages (minutes; the .deb cache under APT_OSTREE_CACHE or
 * /var/cache/apt-ostree makes repeats download nothing).
 */
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readImageCommitInfo } from "../../../shared/image/commit-metadata.ts";
import { adminDeploy, adminInitFs, adminOsInit, pullLocal } from "../../../shared/ostree/admin.ts";
import { parseCommitObject } from "../../../shared/ostree/commit-object.ts";
import { initRepo, readCommitObject } from "../../../shared/ostree/repo.ts";
import { commitSyntheticImage } from "../../helpers/synthetic-image.ts";
import { DEFAULT_RECIPES_DIR } from "../../../server/cli/defaults.ts";
import { defaultCacheDir, workDir } from "../../../server/compose/cache.ts";
import { composeWithCli } from "../../helpers/compose-cli.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const TEST_RECIPES = fileURLToPath(new URL("../../fixtures/recipes/", import.meta.url));
const MINUTES = 60_000;
let dir: string;

beforeAll(async () => {
  dir = await makeTempDir("compose");
});
afterAll(async () => removeTree(dir));

async function ostreeCat(repo: string, commit: string, path: string): Promise<string> {
  return (await execa("ostree", ["cat", `--repo=${repo}`, commit, path])).stdout;
}

describe("compose from Debian's packages", () => {
  it("rejects a package APT cannot find before downloading anything, naming the file", async () => {
    const recipes = join(dir, "bad-recipes");
    await mkdir(join(recipes, "images"), { recursive: true });
    await mkdir(join(recipes, "conf/machine"), { recursive: true });
    await writeFile(join(recipes, "conf/machine/tiny-amd64.yaml"), "architecture: amd64\n");
    await writeFile(
      join(recipes, "images/tiny.yaml"),
      `include: ${join(DEFAULT_RECIPES_DIR, "conf/distro/debian-bookworm.yaml")}\npackages: [hello, no-such-package-apt-ostree]\n`,
    );
    const before = await readdir(workDir(defaultCacheDir())).catch(() => []);
    const result = await execa(process.execPath, [SERVER_CLI, "compose", "--recipes", recipes, "--image", "tiny", "--machine", "tiny-amd64", "--repo", join(dir, "bad-repo")], { reject: false });
    expect(result.exitCode).toBe(1);
    expect(result.stderr.trim().split("\n").at(-1)).toBe("error: images/tiny.yaml: packages: APT cannot find 'no-such-package-apt-ostree' in debian bookworm (amd64)");
    expect(await readdir(workDir(defaultCacheDir())).catch(() => [])).toEqual(before);
    expect(await readdir(join(dir, "bad-repo")).catch(() => null)).toBeNull();
  }, 5 * MINUTES);

  it("refuses a --version the ref already has, before building anything", async () => {
    const repo = join(dir, "dup-repo");
    await initRepo(repo, "archive");
    const existing = await commitSyntheticImage(repo, "debian/bookworm/tiny-amd64/tiny", dir, { version: "1", sequence: 1 });
    const result = await execa(process.execPath, [SERVER_CLI, "compose", "--recipes", TEST_RECIPES, "--image", "tiny", "--machine", "tiny-amd64", "--repo", repo, "--version", "1"], { reject: false });
    expect(result.exitCode).toBe(1);
    expect(result.stderr.trim().split("\n").at(-1)).toBe(
      `error: version 1 already exists on debian/bookworm/tiny-amd64/tiny (commit ${existing.slice(0, 12)}); choose another --version or omit it to get the next one`,
    );
  }, 5 * MINUTES);

  it("composes the same commit twice from the same recipe and packages, the second time from the cache, and the commit deploys", async () => {
    const args = ["--image", "appliance-minimal", "--machine", "qemu-amd64"];
    const first = await composeWithCli([...args, "--repo", join(dir, "repo-a")]);
    // The first compose may have reused indices fetched nearly an hour ago by an earlier run; without a
    // longer --index-max-age the second could cross the 1 h default and fetch them again (it did in CI).
    const second = await composeWithCli([...args, "--repo", join(dir, "repo-b"), "--version", first.version, "--index-max-age", "7d"]);
    expect(second.commit).toBe(first.commit);
    expect(second).toMatchObject({ packagesFetched: 0, indicesFetched: 0, changed: true });
    expect(first).toMatchObject({ ref: "debian/bookworm/qemu-amd64/appliance-minimal", version: "1", sequence: 1 });

    const repo = join(dir, "repo-a");
    const info = readImageCommitInfo(parseCommitObject(await readCommitObject(repo, first.commit)), "composed commit");
    expect(info).toMatchObject({ architecture: "amd64", machine: "qemu-amd64", image: "appliance-minimal" });
    expect(info.packages.map((p) => p.name)).toEqual(expect.arrayContaining(["systemd", "ostree-boot", "dracut", "linux-image-amd64"]));
    expect(first.kernel).toMatch(/^6\.1\./);
    const modules = `/usr/lib/modules/${first.kernel}`;
    const listing = (await execa("ostree", ["ls", `--repo=${repo}`, first.commit, modules])).stdout;
    expect(listing).toMatch(/\/vmlinuz\n/);
    expect(listing).toMatch(/\/initramfs\.img\n/);
    expect(listing).not.toMatch(/kernel\/sound/);
    expect(await ostreeCat(repo, first.commit, "/usr/etc/hostname")).toBe("appliance");
    // The bootable pieces: the machine's kernel args, the agent with its unit enabled, GRUB's counter.
    expect(info.kernelArgs).toEqual(expect.arrayContaining(["console=ttyS0,115200", "panic=5"]));
    expect(await ostreeCat(repo, first.commit, "/usr/lib/apt-ostree/agent.yaml")).toContain("ref: debian/bookworm/qemu-amd64/appliance-minimal");
    expect(await ostreeCat(repo, first.commit, "/usr/lib/apt-ostree/agent.yaml")).toMatch(/^bootUnits: true$/m);
    expect(await ostreeCat(repo, first.commit, "/usr/lib/apt-ostree/apt-ostreed.cjs")).toMatch(/^#!\/usr\/bin\/env node/);
    expect(await ostreeCat(repo, first.commit, "/usr/lib/systemd/system/apt-ostreed.service")).toContain("ExecStart=/usr/bin/node /usr/lib/apt-ostree/apt-ostreed.cjs");
    expect((await execa("ostree", ["ls", `--repo=${repo}`, first.commit, "/usr/etc/systemd/system/multi-user.target.wants/apt-ostreed.service"])).stdout).toMatch(/-> (\/usr)?\/lib\/systemd\/system\/apt-ostreed\.service$/);
    // The boot units: the health check gates boot-complete.target, bless follows it, the reboot unit only runs on failure.
    const links = async (dir: string) => (await execa("ostree", ["ls", `--repo=${repo}`, first.commit, dir])).stdout;
    expect(await links("/usr/etc/systemd/system/boot-complete.target.requires")).toMatch(/apt-ostree-healthcheck\.service ->/);
    expect(await links("/usr/etc/systemd/system/multi-user.target.wants")).toMatch(/apt-ostree-bless\.service ->/);
    expect(await ostreeCat(repo, first.commit, "/usr/lib/systemd/system/apt-ostree-healthcheck.service")).toContain("OnFailure=apt-ostree-reboot-on-failure.service");
    expect(await links("/usr/lib/apt-ostree/boot")).toMatch(/^-007\d+ .* \/usr\/lib\/apt-ostree\/boot\/reboot-on-failure$/m);
    expect(await ostreeCat(repo, first.commit, "/usr/lib/systemd/system/emergency.service.d/apt-ostree.conf")).toContain("ExecStart=/usr/lib/apt-ostree/boot/emergency-reboot");
    expect(await ostreeCat(repo, first.commit, "/usr/etc/grub.d/08_apt-ostree-counter")).toContain("set default=1");
    expect(await ostreeCat(repo, first.commit, "/usr/share/dpkg/database/status")).toMatch(/Package: systemd\n/);
    expect(await ostreeCat(repo, first.commit, "/usr/lib/tmpfiles.d/zz-apt-ostree-autovar.conf")).toMatch(/^L \/var\/lib\/dpkg - - - - \.\.\/\.\.\/usr\/share\/dpkg\/database$/m);
    expect((await execa("ostree", ["ls", `--repo=${repo}`, first.commit, "/var"])).stdout.trim().split("\n")).toHaveLength(1);

    const sysroot = join(dir, "sysroot");
    await execa("mkdir", ["-p", sysroot]);
    await adminInitFs(sysroot);
    await adminOsInit(sysroot, "debian");
    await pullLocal(join(sysroot, "ostree/repo"), repo, first.commit);
    await adminDeploy({ sysroot, osname: "debian", revision: first.commit });
    const deployed = join(sysroot, "ostree/deploy/debian/deploy", `${first.commit}.0`);
    expect(await readFile(join(deployed, "etc/systemd/network/10-dhcp.network"), "utf8")).toMatch(/DHCP=yes/);
    expect(await readdir(join(sysroot, "boot/ostree"))).toHaveLength(1);
  }, 20 * MINUTES);

  it("keeps the previous commit when nothing changed, and composes arm64 on this x86_64 host", async () => {
    const repo = join(dir, "repo-tiny");
    const first = await composeWithCli(["--recipes", TEST_RECIPES, "--image", "tiny", "--machine", "tiny-amd64", "--repo", repo]);
    const again = await composeWithCli(["--recipes", TEST_RECIPES, "--image", "tiny", "--machine", "tiny-amd64", "--repo", repo]);
    expect(again).toMatchObject({ changed: false, commit: first.commit, version: "1" });
    expect(await ostreeCat(repo, first.commit, "/usr/share/composed-by")).toBe("composed by apt-ostree");
    expect(await ostreeCat(repo, first.commit, "/usr/etc/motd")).toBe("tiny test image");

    const arm = await composeWithCli(["--recipes", TEST_RECIPES, "--image", "tiny", "--machine", "tiny-arm64", "--repo", repo]);
    expect(arm.ref).toBe("debian/bookworm/tiny-arm64/tiny");
    const elf = Buffer.from((await execa("ostree", ["cat", `--repo=${repo}`, arm.commit, "/usr/bin/hello"], { encoding: "buffer" })).stdout);
    const EM_AARCH64 = 183;
    expect(elf.readUInt16LE(18)).toBe(EM_AARCH64);
  }, 20 * MINUTES);
});
