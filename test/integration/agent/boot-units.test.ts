/**
 * The shell helpers behind apt-ostree-bless.service and apt-ostree-reboot-on-failure.service,
 * run as they are shipped, against a real grubenv with the real grub-editenv. Only `systemctl`
 * is a stand-in on PATH that records the reboot it was asked for.
 */
import { chmod, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const BOOT_HELPERS = fileURLToPath(new URL("../../../device/boot/", import.meta.url));
let dir: string;
let grubenv: string;
let env: NodeJS.ProcessEnv;

const editenv = (...args: string[]) => execa("grub-editenv", [grubenv, ...args]);
const listEnv = async () => (await editenv("list")).stdout;
const reboots = async () => (await readFile(join(dir, "systemctl.log"), "utf8").catch(() => "")).trim();
const helper = (name: string) => execa(join(BOOT_HELPERS, name), [], { env, reject: false });

beforeAll(async () => {
  dir = await makeTempDir("boot-units");
  grubenv = join(dir, "grubenv");
  await mkdir(join(dir, "bin"));
  await writeFile(join(dir, "bin/systemctl"), `#!/bin/sh\necho "$@" >> ${join(dir, "systemctl.log")}\n`);
  await chmod(join(dir, "bin/systemctl"), 0o755);
  // Not this host's kernel log: a file stands in for /dev/kmsg.
  env = { ...process.env, PATH: `${join(dir, "bin")}:${process.env.PATH}`, APT_OSTREE_GRUBENV: grubenv, APT_OSTREE_KMSG: join(dir, "kmsg") };
});
afterAll(() => removeTree(dir));

describe("boot unit helpers", () => {
  it("bless clears an armed counter and marks the boot good", async () => {
    await editenv("create");
    await editenv("set", "boot_counter=1", "boot_success=0");
    const result = await helper("bless");
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await listEnv()).toBe("boot_success=1");
  });

  it("bless replaces both blocks whole and repairs a truncated grubenv and a garbled copy", async () => {
    const copy = join(dir, "apt-ostree.env");
    await editenv("set", "boot_counter=2", "boot_success=0", "saved_entry=kept");
    await writeFile(grubenv, "");
    await writeFile(copy, "# GRUB Environment Block\nboot_counter=2\n####"); // truncated: lists, but takes nothing new
    const result = await helper("bless");
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await listEnv()).toBe("boot_success=1");
    expect((await execa("grub-editenv", [copy, "list"])).stdout).toBe("boot_success=1");
    // A readable block keeps its other variables.
    await editenv("set", "saved_entry=kept");
    await helper("bless");
    expect((await listEnv()).split("\n").sort()).toEqual(["boot_success=1", "saved_entry=kept"]);
    expect(await readdir(dir)).not.toContain("grubenv.new");
  });

  it("reboot-on-failure reads the copy when grubenv is unreadable, as GRUB does", async () => {
    const before = await reboots();
    const copy = join(dir, "apt-ostree.env");
    await execa("grub-editenv", [copy, "set", "boot_counter=1"]);
    await writeFile(grubenv, "garbage");
    const result = await helper("reboot-on-failure");
    expect(result.stdout).toContain("rebooting (boot_counter=1)");
    expect(await reboots()).toBe(before ? `${before}\nreboot` : "reboot");
    await helper("bless");
  });

  it("reboot-on-failure reboots while an update is on trial, the last try included", async () => {
    for (const counter of ["1", "0"]) {
      await editenv("set", `boot_counter=${counter}`);
      const result = await helper("reboot-on-failure");
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toContain(`rebooting (boot_counter=${counter})`);
    }
    expect((await reboots()).split("\n").slice(-2)).toEqual(["reboot", "reboot"]);
    expect(await readFile(join(dir, "kmsg"), "utf8")).toContain("apt-ostree: boot health check failed; rebooting (boot_counter=0)");
  });

  it("reboot-on-failure does not reboot the fallback or a boot with nothing on trial (no reboot loop)", async () => {
    const before = await reboots();
    await editenv("set", "boot_counter=-1");
    expect((await helper("reboot-on-failure")).stdout).toContain("not rebooting (no update on trial, boot_counter='-1')");
    await editenv("unset", "boot_counter");
    expect((await helper("reboot-on-failure")).stdout).toContain("not rebooting (no update on trial, boot_counter='')");
    expect(await reboots()).toBe(before);
  });
});

describe("emergency mode", () => {
  const emergency = async (cmdline: string) => {
    await writeFile(join(dir, "cmdline"), `${cmdline}\n`);
    return execa(join(BOOT_HELPERS, "emergency-reboot"), [], {
      env: { ...env, APT_OSTREE_CMDLINE: join(dir, "cmdline"), APT_OSTREE_EMERGENCY_DELAY: "0", APT_OSTREE_SULOGIN_SHELL: join(dir, "bin/sulogin-shell") },
      reject: false,
    });
  };

  beforeAll(async () => {
    await writeFile(join(dir, "bin/sulogin-shell"), `#!/bin/sh\necho "shell $@"\n`);
    await chmod(join(dir, "bin/sulogin-shell"), 0o755);
  });

  it("says so on the kernel log and reboots: nobody will answer the root shell", async () => {
    const before = await reboots();
    const result = await emergency("root=LABEL=root panic=5 fsck.repair=yes");
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^apt-ostree: emergency mode \(failed: .*\); rebooting in 0 s/);
    // The stand-in systemctl logs every call: the failed units asked for, then the reboot.
    expect((await reboots()).slice(before.length).trim().split("\n")).toEqual(["--failed --no-legend --plain", "reboot"]);
    expect(await readFile(join(dir, "kmsg"), "utf8")).toContain("apt-ostree: emergency mode");
  });

  it("keeps systemd's shell when the kernel command line asks for it", async () => {
    const before = await reboots();
    const result = await emergency("root=LABEL=root apt-ostree.emergency=shell");
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe("shell emergency");
    expect(await reboots()).toBe(before);
  });
});

describe("the shipped units", () => {
  it("pass systemd-analyze verify (only the image's own executables are missing on this host)", async () => {
    const units = fileURLToPath(new URL("../../../device/units/", import.meta.url));
    const names = ["apt-ostreed.service", "apt-ostree-healthcheck.service", "apt-ostree-bless.service", "apt-ostree-reboot-on-failure.service"];
    const result = await execa("systemd-analyze", ["verify", ...names.map((n) => join(units, n))], { reject: false, all: true });
    const complaints = result.all.split("\n").filter(Boolean).filter((line) => !/Command \/usr\/(bin\/apt-ostree|bin\/node|lib\/apt-ostree\/\S+) is not executable/.test(line));
    expect(complaints).toEqual([]);
  });
});
