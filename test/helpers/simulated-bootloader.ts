/**
 * A device's disk for tests without a real boot: a throwaway OSTree sysroot (real `ostree admin`)
 * and a small bootloader that does what our grub.cfg does (DESIGN.md 5.5): read the BLS entries
 * ostree wrote, default first; if the grubenv counter (written by the agent with grub-editenv) is
 * armed, count the try down, and at 0 boot the previous entry. "Booting" writes the entry's
 * kernel command line, a fresh boot id, and a "root" symlink to the deployment ostree= names
 * (resolved at boot, as ostree-prepare-root does), where the agent reads them.
 */
import { randomUUID } from "node:crypto";
import { readdir, readFile, realpath, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { removeFile } from "../../shared/fs/remove-file.ts";
import { adminDeploy, adminInitFs, adminOsInit, pullLocal } from "../../shared/ostree/admin.ts";
import { setRef } from "../../shared/ostree/repo.ts";

export const OSNAME = "debian";

export interface BootEntry {
  file: string;
  version: string;
  options: string;
}

export class SimulatedBootloader {
  readonly cmdlineFile: string;
  /** Stands for the running system's "/": a symlink to the booted deployment, as ostree-prepare-root mounts it. */
  readonly rootDir: string;
  readonly bootIdFile: string;
  readonly grubenv: string;
  /** Every entry booted, oldest first: `<ostree version> <counter before>`. */
  readonly bootLog: string[] = [];

  constructor(readonly sysroot: string, stateDir: string) {
    this.cmdlineFile = join(stateDir, "cmdline");
    this.rootDir = join(stateDir, "root");
    this.bootIdFile = join(stateDir, "boot_id");
    this.grubenv = join(sysroot, "boot", "grub", "grubenv");
  }

  async entries(): Promise<BootEntry[]> {
    const dir = join(this.sysroot, "boot", "loader", "entries");
    const names = (await readdir(dir)).filter((n) => n.endsWith(".conf"));
    const entries: BootEntry[] = [];
    for (const file of names) {
      const text = await readFile(join(dir, file), "utf8");
      const field = (key: string) => new RegExp(`^${key} (.*)$`, "m").exec(text)?.[1] ?? "";
      entries.push({ file, version: field("version"), options: field("options") });
    }
    // ostree numbers entries so the highest "version" (ostree's own) is the default, like GRUB's BLS sort.
    return entries.sort((a, b) => Number(b.version) - Number(a.version));
  }

  /** The counter's copy GRUB reads when grubenv is unreadable (08_apt-ostree-counter). */
  get counterCopy(): string {
    return join(dirname(this.grubenv), "apt-ostree.env");
  }

  /** A block's variables, or null when it is missing or unreadable. */
  private async readBlock(file: string): Promise<Record<string, string> | null> {
    if (!(await stat(file).catch(() => null))) return null;
    const result = await execa("grub-editenv", [file, "list"], { reject: false });
    if (result.exitCode !== 0) return null;
    return Object.fromEntries(result.stdout.split("\n").filter(Boolean).map((line) => line.split("=", 2) as [string, string]));
  }

  /** grubenv, else its copy, else null: what grub.cfg's counter snippet reads. */
  async readEnv(): Promise<Record<string, string> | null> {
    return (await this.readBlock(this.grubenv)) ?? (await this.readBlock(this.counterCopy));
  }

  /** One power-on: picks the entry as grub.cfg would, and returns it. */
  async boot(): Promise<BootEntry> {
    const entries = await this.entries();
    const env = await this.readEnv();
    let index = 0;
    const counter = env?.boot_counter;
    // GRUB's save_env rewrites each block in place and fails on an unreadable one.
    const save = async (value: string) => {
      for (const file of [this.grubenv, this.counterCopy]) if (await this.readBlock(file)) await execa("grub-editenv", [file, "set", `boot_counter=${value}`]);
    };
    if (env === null) index = Math.min(1, entries.length - 1);
    else if (counter !== undefined) {
      const next = { "3": "2", "2": "1", "1": "0" }[counter];
      if (next !== undefined) await save(next);
      else {
        index = Math.min(1, entries.length - 1);
        await save("-1");
      }
    }
    const entry = entries[index]!;
    this.bootLog.push(`${entry.version} ${counter ?? "-"}`);
    await writeFile(this.cmdlineFile, `${entry.options}\n`);
    // What ostree-prepare-root does with ostree=: resolve it now, at boot, and make that the root.
    const deployment = await realpath(join(this.sysroot, /ostree=(\S+)/.exec(entry.options)![1]!));
    await removeFile(this.rootDir);
    await symlink(deployment, this.rootDir);
    await writeFile(this.bootIdFile, `${randomUUID()}\n`);
    return entry;
  }
}

/** A sysroot with `commit` (pulled from `sourceRepo`, ref `ref`) deployed, and a bootloader booted into it. */
export async function createDeviceDisk(dir: string, sourceRepo: string, ref: string, commit: string): Promise<SimulatedBootloader> {
  const sysroot = join(dir, "sysroot");
  await execa("mkdir", ["-p", sysroot, join(dir, "state")]);
  await adminInitFs(sysroot);
  await adminOsInit(sysroot, OSNAME);
  const repo = join(sysroot, "ostree", "repo");
  await pullLocal(repo, sourceRepo, commit);
  await setRef(repo, ref, commit);
  await adminDeploy({ sysroot, osname: OSNAME, revision: ref });
  const bootloader = new SimulatedBootloader(sysroot, join(dir, "state"));
  await bootloader.boot();
  return bootloader;
}
