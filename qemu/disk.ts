/**
 * Builds a bootable disk image from a published commit (DESIGN.md 5.5): GPT with a BIOS-boot
 * partition (amd64) or an EFI system partition (arm64), /boot ext4 and root ext4; `ostree admin init-fs`/`os-init`/`deploy` of the commit
 * with its machine's kernel arguments; the device's own files (agent config, pinned keys)
 * written into the deployment's /etc; GRUB for BIOS (qemu/grub-bios.ts) or UEFI
 * (qemu/grub-efi.ts), from the image's own GRUB modules, with a first grub.cfg rendered from
 * ostree's boot entries. The device's ostree then owns grub.cfg (`sysroot.bootloader=grub2`,
 * /boot/grub/grub.cfg -> ../loader/grub.cfg, inside ostree's atomic /boot/loader swap).
 *
 * Every loop device, partition node and mount is undone in `finally`, also when a step fails
 * half-way; a failed build removes its half-written image.
 */
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { stringify as toYaml } from "yaml";
import { AptOstreeError } from "../shared/errors.ts";
import { readImageCommitInfo } from "../shared/image/commit-metadata.ts";
import type { Logger } from "../shared/log.ts";
import { adminInitFs, adminOsInit } from "../shared/ostree/admin.ts";
import { parseCommitObject } from "../shared/ostree/commit-object.ts";
import { runOstree } from "../shared/ostree/exec.ts";
import { readCommitObject, resolveRef } from "../shared/ostree/repo.ts";
import { formatPublicKey } from "../shared/sign/keys.ts";
import { installGrubBios } from "./grub-bios.ts";
import { installGrubEfi } from "./grub-efi.ts";
import { renderGrubConfig } from "./grub-config.ts";

export interface BuildDiskOptions {
  /** The server's archive repo holding the commit. */
  repo: string;
  ref: string;
  /** Commit to deploy; default: the ref's head. */
  commit?: string;
  out: string;
  sizeBytes: number;
  osname: string;
  /** Files for the deployment's /etc (path relative to /etc -> content): the device's identity and settings. */
  etcFiles: Record<string, string>;
  /** Scratch space for the mount point. */
  workDir: string;
  log: Logger;
}

export interface BuiltDisk {
  out: string;
  commit: string;
  version: string;
  architecture: DiskArchitecture;
  kernelArgs: string[];
}

export class DiskBuildError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_DISK_BUILD", message, { cause });
  }
}

/** Root file system and /boot labels; the image's /etc/fstab and `root=` name them. */
export const ROOT_LABEL = "root";
export const BOOT_LABEL = "boot";
const BOOT_PARTITION_MIB = 512;
const FIRST_PARTITION_START = 2048;
const BIOS_BOOT_SECTORS = 2048;
const ESP_MIB = 64;
/** GRUB's name of partition 2, /boot, on the only disk. */
const GRUB_BOOT_PARTITION = "hd0,gpt2";

/** How each architecture's disk boots: partition 1 and the GRUB platform on it. */
export const FIRMWARE = {
  amd64: { kind: "bios", partition: `+${(BIOS_BOOT_SECTORS * 512) / 1024}K`, type: "ef02", name: "bios-boot", grubPlatform: "i386-pc", serialConsole: true },
  arm64: { kind: "efi", partition: `+${ESP_MIB}M`, type: "ef00", name: "efi", grubPlatform: "arm64-efi", serialConsole: false },
} as const;
export type DiskArchitecture = keyof typeof FIRMWARE;

export function isDiskArchitecture(value: string): value is DiskArchitecture {
  return Object.hasOwn(FIRMWARE, value);
}

async function run(file: string, args: string[], what: string): Promise<string> {
  const result = await execa(file, args, { reject: false, all: true });
  if (result.failed) {
    const reason = result.code === "ENOENT" ? `${file} is not installed (bash scripts/setup.sh installs it)` : (result.all ?? "").trim().split("\n").slice(-5).join("\n");
    throw new DiskBuildError(`${what} failed: ${reason}`);
  }
  return result.stdout;
}

export async function buildDisk(options: BuildDiskOptions): Promise<BuiltDisk> {
  const { log } = options;
  if (process.getuid?.() !== 0) throw new DiskBuildError("building a disk image needs root (loop devices, mounts)");
  const commit = options.commit ?? (await resolveRef(options.repo, options.ref));
  if (!commit) throw new DiskBuildError(`${options.repo} has no ref '${options.ref}': compose and publish it first`);
  const info = readImageCommitInfo(parseCommitObject(await readCommitObject(options.repo, commit)), `commit ${commit.slice(0, 12)}`);
  const architecture = info.architecture;
  if (!isDiskArchitecture(architecture)) throw new DiskBuildError(`commit ${commit.slice(0, 12)} is for ${architecture}; disks can be built for ${Object.keys(FIRMWARE).join(" and ")}`);
  const firmware = FIRMWARE[architecture];
  const kernelArgs = [`root=LABEL=${ROOT_LABEL}`, "rw", ...info.kernelArgs];

  await mkdir(dirname(options.out), { recursive: true });
  const partial = `${options.out}.partial`;
  const undo: Array<() => Promise<unknown>> = [];
  try {
    log.info({ event: "disk.partition", out: options.out, sizeBytes: options.sizeBytes }, "partitioning");
    await rm(partial, { force: true });
    await writeFile(partial, "");
    await run("truncate", ["-s", String(options.sizeBytes), partial], "allocating the image");
    await run("sgdisk", ["--zap-all", "-n", `1:${FIRST_PARTITION_START}:${firmware.partition}`, "-t", `1:${firmware.type}`, "-c", `1:${firmware.name}`, "-n", `2:0:+${BOOT_PARTITION_MIB}M`, "-t", "2:8300", "-c", `2:${BOOT_LABEL}`, "-n", "3:0:0", "-t", "3:8300", "-c", `3:${ROOT_LABEL}`, partial], "partitioning (sgdisk)");

    const loop = (await run("losetup", ["--find", "--show", partial], "attaching a loop device")).trim();
    undo.push(() => execa("losetup", ["-d", loop], { reject: false }));
    const [firstPart, bootPart, rootPart] = await partitionNodes(loop, undo, [1, 2, 3]);
    if (firmware.kind === "efi") await run("mkfs.vfat", ["-F", "32", "-n", "EFI", firstPart!], "formatting the EFI system partition");
    // /boot without a journal: GRUB reads ext4 without replaying one, so after a power cut it would
    // see /boot as it was before the journal's last checkpoint — the old /boot/loader, whose bootlinks
    // on the root file system (replayed by Linux) ostree's cleanup already removed: no bootable entry.
    // Without a journal, ostree's fsync of the /boot/loader swap lands in place, where GRUB reads it.
    await run("mkfs.ext4", ["-q", "-O", "^has_journal", "-L", BOOT_LABEL, bootPart!], "formatting /boot");
    await run("mkfs.ext4", ["-q", "-L", ROOT_LABEL, rootPart!], "formatting the root");

    const mnt = await mkdtemp(join(options.workDir, "disk-"));
    undo.push(() => rm(mnt, { recursive: true, force: true }));
    await mount(rootPart!, mnt, undo);
    await mkdir(join(mnt, "boot"));
    await mount(bootPart!, join(mnt, "boot"), undo);

    log.info({ event: "disk.deploy", commit, version: info.version }, `deploying ${info.version}`);
    await adminInitFs(mnt);
    await adminOsInit(mnt, options.osname);
    const deviceRepo = join(mnt, "ostree/repo");
    await runOstree(["pull-local", "--untrusted", `--repo=${deviceRepo}`, options.repo, commit]);
    await runOstree(["refs", `--repo=${deviceRepo}`, "--create", options.ref, commit]);
    await runOstree(["admin", "deploy", `--sysroot=${mnt}`, `--os=${options.osname}`, ...kernelArgs.map((k) => `--karg=${k}`), options.ref]);
    const deployment = await onlyDeployment(mnt, options.osname);
    // journald keeps a boot's log only when /var/log/journal exists as it starts; systemd-tmpfiles
    // makes it later in the first boot, which would leave that boot's log in /run only.
    await mkdir(join(mnt, "ostree/deploy", options.osname, "var/log/journal"), { recursive: true });
    for (const [path, content] of Object.entries(options.etcFiles)) {
      const target = join(deployment, "etc", path);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, content, { mode: path.includes("secret") ? 0o600 : 0o644 });
    }

    log.info({ event: "disk.bootloader" }, "installing GRUB");
    const counter = await counterSnippet(deployment);
    const entries = await readBootEntries(join(mnt, "boot/loader/entries"));
    await writeFile(join(mnt, "boot/loader/grub.cfg"), renderGrubConfig(entries, counter, { serialConsole: firmware.serialConsole }));
    const grub = { moduleDir: join(deployment, "usr/lib/grub", firmware.grubPlatform), bootPartition: GRUB_BOOT_PARTITION, bootDir: join(mnt, "boot"), workDir: options.workDir };
    if (!(await stat(grub.moduleDir).catch(() => null))) throw new DiskBuildError(`the image has no GRUB for ${firmware.grubPlatform} (${grub.moduleDir.slice(deployment.length)} is missing): add the machine's GRUB package to bootloader-packages`);
    if (firmware.kind === "bios") await installGrubBios({ ...grub, disk: loop, biosBootStart: FIRST_PARTITION_START, biosBootSectors: BIOS_BOOT_SECTORS });
    else await installGrubEfi({ ...grub, esp: firstPart! });
    await rm(join(mnt, "boot/grub/grub.cfg"), { force: true });
    await symlink("../loader/grub.cfg", join(mnt, "boot/grub/grub.cfg"));
    // From here on the device's ostree regenerates grub.cfg on every deploy (grub-mkconfig + 15_ostree).
    await runOstree(["config", `--repo=${deviceRepo}`, "set", "sysroot.bootloader", "grub2"]);
    await run("sync", ["-f", join(mnt, "boot")], "sync");
  } catch (error) {
    await undoAll(undo);
    await rm(partial, { force: true });
    throw error;
  }
  await undoAll(undo);
  await rename(partial, options.out);
  return { out: options.out, commit, version: info.version, architecture, kernelArgs };
}

export interface DeviceSettings {
  server: string;
  mqtt: string;
  /** Legacy pinned keys (keys.d) for images without a root of trust; none when the image ships one. */
  publicKeys: Uint8Array[];
  deviceId?: string;
  groups?: string[];
  bootTries?: number;
  /** The fleet enrollment secret (the file's text), for a server's --auto-accept; written 0600. */
  enrollmentSecret?: string;
  /** The CA certificate (PEM) the device pins for https:// and mqtts://: /etc/apt-ostree/ca.pem, the agent's caFile. */
  ca?: string;
  /** A root shell on a virtio serial port for test harnesses (qemu/test-console.ts). Never for a real device. */
  testConsole?: boolean;
}

/** Where the test console's virtio serial port appears in the guest (udev names it after qemu's `name=`). */
export const TEST_CONSOLE_PORT = "org.apt-ostree.test-console";

/**
 * The test console: a root shell reading commands from a virtio serial port (not a console, so
 * no getty claims it and nothing echoes), started with multi-user.target and again whenever it
 * ends, also before udev has made the port's name.
 */
export const TEST_CONSOLE_UNIT = `# Written by apt-ostree-server image build --test-console: a root shell on a virtio serial port
# for test harnesses (qemu/test-console.ts). Anyone with the VM's console socket is root.
[Unit]
Description=apt-ostree test console (root shell on a virtio port; test images only)
StartLimitIntervalSec=0

[Service]
ExecStart=/bin/sh
StandardInput=file:/dev/virtio-ports/${TEST_CONSOLE_PORT}
StandardOutput=file:/dev/virtio-ports/${TEST_CONSOLE_PORT}
StandardError=inherit
Restart=always
RestartSec=2
`;

export const DEVICE_CA_FILE = "/etc/apt-ostree/ca.pem";

/** The device's own /etc files on a built disk: its agent.yaml, and legacy pinned keys when given (the root of trust is in the image's /usr). */
export function deviceEtcFiles(settings: DeviceSettings): Record<string, string> {
  const config = {
    server: settings.server,
    mqtt: settings.mqtt,
    ...(settings.deviceId ? { deviceId: settings.deviceId } : {}),
    ...(settings.groups?.length ? { groups: settings.groups } : {}),
    ...(settings.publicKeys.length > 0 ? { keysDir: "/etc/apt-ostree/keys.d" } : {}),
    ...(settings.bootTries ? { bootTries: settings.bootTries } : {}),
    ...(settings.enrollmentSecret !== undefined ? { enrollmentSecretFile: "/etc/apt-ostree/enrollment-secret" } : {}),
    ...(settings.ca !== undefined ? { caFile: DEVICE_CA_FILE } : {}),
  };
  return {
    ...(settings.enrollmentSecret !== undefined ? { "apt-ostree/enrollment-secret": settings.enrollmentSecret } : {}),
    "apt-ostree/agent.yaml": `# Written by apt-ostree-server image build.\n${toYaml(config)}`,
    ...(settings.ca !== undefined ? { "apt-ostree/ca.pem": settings.ca } : {}),
    ...(settings.publicKeys.length > 0 ? { "apt-ostree/keys.d/server.pub": settings.publicKeys.map(formatPublicKey).join("") } : {}),
    ...(settings.testConsole
      ? {
          "systemd/system/apt-ostree-test-console.service": TEST_CONSOLE_UNIT,
          // A drop-in rather than an enablement symlink: the image's /etc takes plain files.
          "systemd/system/multi-user.target.d/apt-ostree-test-console.conf": "[Unit]\nWants=apt-ostree-test-console.service\n",
        }
      : {}),
  };
}

async function undoAll(undo: Array<() => Promise<unknown>>): Promise<void> {
  for (const step of undo.reverse()) await step().catch(() => undefined);
  undo.length = 0;
}

async function mount(device: string, at: string, undo: Array<() => Promise<unknown>>): Promise<void> {
  await run("mount", [device, at], `mounting ${device}`);
  undo.push(async () => {
    // ostree marks deployment roots immutable; unmounting does not care, but a busy mount must not be left.
    const result = await execa("umount", [at], { reject: false });
    if (result.failed) await execa("umount", ["--lazy", at], { reject: false });
  });
}

/**
 * This host's kernel has no partition-table parsers wired to udev: `partx -a` makes the kernel
 * see the partitions, and nothing creates /dev nodes for them, so make them from sysfs.
 */
async function partitionNodes(loop: string, undo: Array<() => Promise<unknown>>, numbers: number[]): Promise<string[]> {
  const name = loop.replace(/^\/dev\//, "");
  await execa("partx", ["-a", loop], { reject: false });
  undo.push(() => execa("partx", ["-d", loop], { reject: false }));
  const nodes: string[] = [];
  for (const n of numbers) {
    const node = `/dev/${name}p${n}`;
    const sys = `/sys/block/${name}/${name}p${n}/dev`;
    const devNumbers = await readFile(sys, "utf8").catch(() => null);
    if (devNumbers === null) throw new DiskBuildError(`partition ${n} of ${loop} did not appear (${sys} is missing)`);
    if (!(await stat(node).catch(() => null))) {
      const [major, minor] = devNumbers.trim().split(":");
      await run("mknod", [node, "b", major!, minor!], `creating ${node}`);
      undo.push(() => rm(node, { force: true }));
    }
    nodes.push(node);
  }
  return nodes;
}

async function onlyDeployment(sysroot: string, osname: string): Promise<string> {
  const dir = join(sysroot, "ostree/deploy", osname, "deploy");
  const found = (await readdir(dir)).filter((name) => /^[0-9a-f]{64}\.\d+$/.test(name));
  if (found.length !== 1) throw new DiskBuildError(`expected one deployment in ${dir}, found ${found.length}`);
  return join(dir, found[0]!);
}

/** The image's grub.d counter snippet (the same text ostree's grub-mkconfig run emits on the device). */
async function counterSnippet(deployment: string): Promise<string> {
  const script = join(deployment, "etc/grub.d/08_apt-ostree-counter");
  if (!(await stat(script).catch(() => null))) return "";
  return run("sh", [script], "the image's boot counter snippet");
}

export interface BootEntry {
  title: string;
  version: number;
  linux: string;
  initrd: string | null;
  options: string;
}

/** ostree's BLS entries (`/boot/loader/entries/ostree-*.conf`), newest (highest version) first as ostree orders them. */
export async function readBootEntries(dir: string): Promise<BootEntry[]> {
  const entries: BootEntry[] = [];
  for (const name of (await readdir(dir)).filter((n) => n.endsWith(".conf"))) {
    const fields = new Map<string, string>();
    for (const line of (await readFile(join(dir, name), "utf8")).split("\n")) {
      const match = /^(\S+)\s+(.*)$/.exec(line.trim());
      if (match) fields.set(match[1]!, match[2]!);
    }
    const linux = fields.get("linux");
    if (!linux) throw new DiskBuildError(`boot entry ${name} has no 'linux' line`);
    entries.push({ title: fields.get("title") ?? name, version: Number(fields.get("version") ?? 0), linux, initrd: fields.get("initrd") ?? null, options: fields.get("options") ?? "" });
  }
  return entries.sort((a, b) => b.version - a.version);
}
