import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { UsageError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import { readPublicKeyFile } from "../../shared/sign/keys.ts";
import { readEnrollmentSecret } from "../../shared/enrollment-secret.ts";
import { buildDisk, deviceEtcFiles } from "../../qemu/disk.ts";
import { HOST_FROM_GUEST, Vm, accelFromEnv, type VmArchitecture } from "../../qemu/vm.ts";
import { defaultCacheDir, workDir } from "../compose/cache.ts";
import { defaultRepo } from "./defaults.ts";
import { readCaCertificate } from "../tls/ca-file.ts";

const SIZE_UNITS: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

export function parseSize(text: string, option: string): number {
  const match = /^(\d+)([KMG]?)$/i.exec(text.trim());
  if (!match) throw new UsageError(`--${option}: '${text}' is not a size (e.g. 4G, 2048M)`);
  return Number(match[1]) * SIZE_UNITS[match[2]!.toUpperCase()]!;
}

const build = defineCommand({
  name: "build",
  description: "Build a bootable disk image (GPT, /boot and root ext4, GRUB with the boot counter: BIOS for amd64 commits, UEFI for arm64 ones) from a published commit, with the device's agent settings in its /etc.",
  options: {
    repo: { type: "string", valueName: "DIR", description: "Archive repo (default: $APT_OSTREE_REPO or /var/lib/apt-ostree-server/repo)" },
    ref: { type: "string", valueName: "REF", required: true, description: "Ref to deploy, e.g. debian/bookworm/qemu-amd64/appliance-minimal" },
    commit: { type: "string", valueName: "CHECKSUM", description: "Commit to deploy (default: the ref's head)" },
    out: { type: "string", valueName: "FILE", required: true, description: "Disk image to write (raw)" },
    size: { type: "string", valueName: "SIZE", default: "4G", description: "Disk size (sparse file)" },
    key: { type: "string", valueName: "FILE", description: "Legacy: a public key (ed25519.pub) pinned in /etc for images composed without --trust-root, which ship their root of trust in /usr" },
    server: { type: "string", valueName: "URL", description: `Server URL the device uses (default https://${HOST_FROM_GUEST}:8080 with --ca, http:// without; 10.0.2.2 is the host in qemu's user network)` },
    mqtt: { type: "string", valueName: "URL", description: `MQTT broker URL the device uses (default mqtts://${HOST_FROM_GUEST}:1883 with --ca, mqtt:// without)` },
    ca: { type: "string", valueName: "FILE", description: "CA certificate (PEM, e.g. serve's DATA/tls/ca.pem) the device pins for https:// and mqtts://: its /etc/apt-ostree/ca.pem, the agent's caFile" },
    "device-id": { type: "string", valueName: "ID", description: "Device id (default: generated on first boot)" },
    groups: { type: "string", valueName: "A,B", description: "Groups the device reports (the server's operator assigns the groups rollouts select on)" },
    "enrollment-secret": { type: "string", valueName: "FILE", description: "The fleet enrollment secret (as given to serve --enrollment-secret-file), so a server with --auto-accept admits the device" },
    "boot-tries": { type: "string", valueName: "N", default: "3", description: "Boots a new deployment gets before GRUB falls back" },
    "test-console": { type: "boolean", description: "Add a root shell on a virtio serial port for test harnesses (qemu/test-console.ts): never on a real device" },
    json: { type: "boolean", description: "Print {out, commit, version, architecture, kernelArgs} as the last line of stdout" },
  },
  notes: ["Needs root, sgdisk, partx, mkfs.ext4, grub-mkimage and grub-editenv; arm64 disks also mkfs.vfat and mtools (bash scripts/setup.sh installs them). GRUB's modules come from the image itself.", "Leaves no loop device or mount behind, also when it fails."],
  async run({ options, io }) {
    const bootTries = Number(options["boot-tries"]);
    if (!Number.isInteger(bootTries) || bootTries < 1 || bootTries > 9) throw new UsageError(`--boot-tries: '${options["boot-tries"]}' must be 1..9`);
    const publicKeys = options.key ? await readPublicKeyFile(resolve(options.key)) : [];
    // Checked as serve checks it, so a disk never carries a secret the server would refuse.
    const enrollmentSecret = options["enrollment-secret"] === undefined ? undefined : Buffer.from(await readEnrollmentSecret(resolve(options["enrollment-secret"]))).toString("utf8");
    const ca = options.ca === undefined ? undefined : await readCaCertificate(resolve(options.ca));
    const server = options.server ?? `${ca ? "https" : "http"}://${HOST_FROM_GUEST}:8080`;
    const mqtt = options.mqtt ?? `${ca ? "mqtts" : "mqtt"}://${HOST_FROM_GUEST}:1883`;
    for (const [flag, url] of [["--server", server], ["--mqtt", mqtt]] as const) {
      if (!ca && /^(https|mqtts):/.test(url)) throw new UsageError(`${flag} ${url} needs --ca FILE: the device trusts only the CA its image pins (serve prints where its ca.pem is)`);
    }
    const cache = defaultCacheDir(io.env);
    await mkdir(workDir(cache), { recursive: true });
    const result = await buildDisk({
      repo: resolve(options.repo ?? defaultRepo(io.env)),
      ref: options.ref,
      commit: options.commit,
      out: resolve(options.out),
      sizeBytes: parseSize(options.size, "size"),
      osname: "debian",
      etcFiles: deviceEtcFiles({ server, mqtt, ca, publicKeys, deviceId: options["device-id"], groups: options.groups?.split(",").filter(Boolean), bootTries, enrollmentSecret, testConsole: options["test-console"] === true }),
      workDir: workDir(cache),
      log: createLogger({ name: "image" }),
    });
    printResult(io, options.json, result, `Wrote ${result.out}: ${options.ref} version ${result.version} (${result.commit.slice(0, 12)})\n  Kernel arguments: ${result.kernelArgs.join(" ")}`);
  },
});

const run = defineCommand({
  name: "run",
  description: "Boot a disk image in qemu: serial console to a log file, user-mode networking (the guest reaches the host at 10.0.2.2), i6300esb watchdog. Runs until the VM powers off or you press Ctrl-C.",
  options: {
    disk: { type: "string", valueName: "FILE", required: true, description: "Disk image from 'image build'" },
    "serial-log": { type: "string", valueName: "FILE", required: true, description: "File the serial console is written to" },
    memory: { type: "string", valueName: "MIB", default: "1536", description: "Guest memory in MiB" },
    arch: { type: "string", valueName: "ARCH", default: "amd64", description: "The disk's architecture: amd64 (qemu-system-x86_64, BIOS) or arm64 (qemu-system-aarch64 -M virt, UEFI)" },
  },
  notes: ["Uses TCG; set APT_OSTREE_QEMU_ACCEL=kvm where KVM runs stock kernels (amd64 only)."],
  async run({ options, io }) {
    const arch = options.arch;
    if (arch !== "amd64" && arch !== "arm64") throw new UsageError(`--arch: '${arch}' must be amd64 or arm64`);
    const memoryMiB = Number(options.memory);
    if (!Number.isInteger(memoryMiB) || memoryMiB < 256) throw new UsageError(`--memory: '${options.memory}' must be a whole number of MiB, at least 256`);
    const vm = new Vm({ disk: resolve(options.disk), arch: arch satisfies VmArchitecture, serialLog: resolve(options["serial-log"]), memoryMiB, accel: accelFromEnv(io.env) });
    await vm.start();
    io.stdout.write(`VM running; serial console in ${options["serial-log"]}\n`);
    const stop = () => void vm.stop();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    while (vm.running) await new Promise((r) => setTimeout(r, 1000));
  },
});

export const imageCommand = defineCommand({
  name: "image",
  description: "Build bootable disk images from published commits and boot them in qemu.",
  subcommands: [build, run],
});
