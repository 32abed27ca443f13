import { lstat, mkdir, readFile, readlink, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminDeploy, adminInitFs, adminOsInit, pullLocal } from "../../../shared/ostree/admin.ts";
import { commitTree } from "../../../shared/ostree/commit.ts";
import { initRepo } from "../../../shared/ostree/repo.ts";
import { DPKG_DATABASE, LayoutError, TMPFILES_CONF, convertToOstreeLayout } from "../../../server/compose/layout.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let root: string;

/** A rootfs shaped like mmdebstrap's output, with the awkward parts: device nodes, /var content, /root dotfiles. */
async function debianLikeRootfs(target: string): Promise<void> {
  const files: Record<string, string> = {
    "usr/lib/os-release": "ID=debian\n",
    "usr/lib/modules/6.1.0-test/vmlinuz": "kernel\n",
    "usr/bin/true": "#!/bin/sh\n",
    "etc/hostname": "appliance\n",
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "var/lib/dpkg/status": "Package: base-files\nStatus: install ok installed\nVersion: 12.4\nArchitecture: amd64\n",
    "var/lib/apt/extended_states": "Package: x\nAuto-Installed: 1\n",
    "var/log/dpkg.log": "build log\n",
    "var/cache/debconf/config.dat": "Name: x\n",
    "root/.bashrc": "# root's bashrc\n",
    "usr/local/share/readme": "local\n",
  };
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(target, path)), { recursive: true });
    await writeFile(join(target, path), content);
  }
  for (const empty of ["home", "opt", "srv", "mnt", "usr/local/bin", "var/mail", "var/lib/dpkg/updates", "proc", "sys", "run", "tmp", "boot", "dev"]) {
    await mkdir(join(target, empty), { recursive: true });
  }
  await execa("mknod", [join(target, "dev/null"), "c", "1", "3"]);
  await symlink("/run", join(target, "var/run"));
  await execa("chown", ["0:8", join(target, "var/mail")]);
  await execa("chmod", ["2775", join(target, "var/mail")]);
}

beforeAll(async () => {
  dir = await makeTempDir("layout");
  root = join(dir, "rootfs");
  await debianLikeRootfs(root);
  await convertToOstreeLayout(root);
});
afterAll(async () => removeTree(dir));

describe("OSTree layout conversion", () => {
  it("moves /etc to /usr/etc and the dpkg database under /usr", async () => {
    expect(await readFile(join(root, "usr/etc/hostname"), "utf8")).toBe("appliance\n");
    expect(await lstat(join(root, "etc")).catch(() => null)).toBeNull();
    expect(await readFile(join(root, DPKG_DATABASE, "status"), "utf8")).toMatch(/Package: base-files/);
  });

  it("leaves /var empty and recreates it with tmpfiles.d, keeping file contents in /usr/share/factory", async () => {
    const { readdir } = await import("node:fs/promises");
    expect(await readdir(join(root, "var"))).toEqual([]);
    const conf = await readFile(join(root, TMPFILES_CONF), "utf8");
    expect(conf).toContain("d /var/mail 2775 0 8 -");
    expect(conf).toContain("L /var/run - - - - /run");
    expect(conf).toContain("C /var/lib/apt/extended_states - - - -");
    expect(conf).toContain("L /var/lib/dpkg - - - - ../../usr/share/dpkg/database");
    expect(conf).not.toContain("/var/log/dpkg.log");
    expect(await readFile(join(root, "usr/share/factory/var/lib/apt/extended_states"), "utf8")).toMatch(/Auto-Installed/);
    expect(await readFile(join(root, "usr/share/factory/var/roothome/.bashrc"), "utf8")).toBe("# root's bashrc\n");
  });

  it.each([
    ["home", "var/home"],
    ["opt", "var/opt"],
    ["srv", "var/srv"],
    ["root", "var/roothome"],
    ["mnt", "var/mnt"],
    ["usr/local", "../var/usrlocal"],
    ["ostree", "sysroot/ostree"],
  ])("makes /%s a symlink to %s", async (path, target) => {
    expect(await readlink(join(root, path))).toBe(target);
  });

  it("empties /dev, which ostree commit refuses to read", async () => {
    const { readdir } = await import("node:fs/promises");
    expect(await readdir(join(root, "dev"))).toEqual([]);
  });

  it("refuses to convert a tree twice, naming the reason", async () => {
    await expect(convertToOstreeLayout(root)).rejects.toThrow(LayoutError);
    await expect(convertToOstreeLayout(root)).rejects.toThrow(/no \/etc: not a Debian rootfs/);
  });

  it("gives a tree that the real ostree commits and deploys, with /etc restored from /usr/etc", async () => {
    const repo = join(dir, "repo");
    await initRepo(repo, "archive");
    const commit = await commitTree({ repo, tree: root, branch: "test/layout", subject: "layout", timestamp: 1735689600 });
    const sysroot = join(dir, "sysroot");
    await mkdir(sysroot);
    await adminInitFs(sysroot);
    await adminOsInit(sysroot, "debian");
    await pullLocal(join(sysroot, "ostree/repo"), repo, commit);
    await adminDeploy({ sysroot, osname: "debian", revision: commit, kernelArgs: ["root=LABEL=root"] });
    const deployment = join(sysroot, "ostree/deploy/debian/deploy", `${commit}.0`);
    expect(await readFile(join(deployment, "etc/hostname"), "utf8")).toBe("appliance\n");
    expect((await stat(join(deployment, "usr/lib/tmpfiles.d/zz-apt-ostree-autovar.conf"))).isFile()).toBe(true);
    const entries = await readFile(join(sysroot, "boot/loader/entries/ostree-1-debian.conf"), "utf8");
    expect(entries).toMatch(/options .*root=LABEL=root/);
  });
});
