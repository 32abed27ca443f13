/**
 * Runs a disk image in qemu: qemu-system-x86_64 (BIOS) for amd64 disks, qemu-system-aarch64
 * `-M virt` with Debian's UEFI firmware (qemu-efi-aarch64) for arm64 ones; serial console to a log file, user-mode networking (the guest
 * reaches the host's loopback services at 10.0.2.2), an i6300esb watchdog that resets a hung
 * guest, KVM where it runs stock kernels, TCG otherwise (DESIGN.md 5.5: this host's KVM does
 * not). A guest reboot stays inside the same qemu process, so one VM object spans an update's
 * reboots; `stop()` kills it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { open, readFile } from "node:fs/promises";
import { qmpCommand } from "./qmp.ts";
import { AptOstreeError } from "../shared/errors.ts";
import { TEST_CONSOLE_PORT } from "./disk.ts";

/** Where a user-mode-networked guest sees the host. */
export const HOST_FROM_GUEST = "10.0.2.2";

export type Accel = "tcg" | "kvm";
export type VmArchitecture = "amd64" | "arm64";

/** Debian's qemu-efi-aarch64 firmware; `-bios` keeps its variables in memory, so it boots EFI/BOOT/BOOTAA64.EFI. */
export const AARCH64_FIRMWARE = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";

const MACHINES = {
  amd64: { qemu: "qemu-system-x86_64", package: "qemu-system-x86", machine: ["-machine", "pc"], tcgCpu: "max", firmware: [] as string[] },
  // pauth-impdef: TCG's architected pointer-authentication algorithm is slow to emulate.
  arm64: { qemu: "qemu-system-aarch64", package: "qemu-system-arm and qemu-efi-aarch64", machine: ["-machine", "virt"], tcgCpu: "max,pauth-impdef=on", firmware: ["-bios", AARCH64_FIRMWARE] },
} as const;

export interface VmOptions {
  disk: string;
  /** The disk's architecture (default amd64). */
  arch?: VmArchitecture;
  serialLog: string;
  memoryMiB?: number;
  cpus?: number;
  accel?: Accel;
  /** The disk's format: raw (default), or qcow2 for a copy-on-write overlay over a base disk. */
  diskFormat?: "raw" | "qcow2";
  /**
   * qemu's cache mode for the disk: `unsafe` (default: fast, flushes ignored) or `none` (O_DIRECT:
   * what the guest wrote reaches the host file at once, so a SIGKILL of qemu loses only what the
   * guest had not written yet, as a power cut does).
   */
  diskCache?: "unsafe" | "none";
  /**
   * Log every write and flush the guest sends to this file (qemu's blklogwrites, dm-log-writes
   * format; qemu/write-log.ts replays it): a raw disk only. The file should start empty.
   */
  writeLog?: string;
  /** A Unix socket for the guest's test console port (qemu/test-console.ts), for disks built with --test-console. */
  testConsoleSocket?: string;
  /** A Unix socket for QMP, qemu's machine protocol (`setLink`). */
  qmpSocket?: string;
  /** Where the guest's real-time clock starts (default: the host's time), e.g. a day behind. */
  rtcBase?: Date;
}

/** The guest's network card's netdev, named for QMP's set_link. */
export const NETDEV_ID = "net0";

export class VmError extends AptOstreeError {
  constructor(message: string) {
    super("E_VM", message);
  }
}

function driveSpec(options: VmOptions): string {
  const cache = options.diskCache ?? "unsafe";
  if (options.writeLog === undefined) return `file=${options.disk},format=${options.diskFormat ?? "raw"},if=virtio,cache=${cache}`;
  if ((options.diskFormat ?? "raw") !== "raw") throw new VmError("a write log needs a raw disk");
  // cache=unsafe drops the guest's flushes before blklogwrites sees them: the log would hold none.
  if (cache !== "none") throw new VmError("a write log needs diskCache 'none'");
  // The children need not reach the host's disk on a guest flush (a trial is cut by SIGKILL, not
  // by the host's power); the flush itself is still logged. A large super update interval saves
  // a log flush per 4096 writes (qemu still rewrites the super at each flush entry).
  return `if=virtio,cache=none,driver=blklogwrites,file.driver=file,file.filename=${options.disk},file.cache.no-flush=on,log.driver=file,log.filename=${options.writeLog},log.cache.no-flush=on,log-super-update-interval=1000000000000`;
}

export function qemuArgs(options: VmOptions): string[] {
  const accel = options.accel ?? "tcg";
  const machine = MACHINES[options.arch ?? "amd64"];
  if (accel === "kvm" && options.arch === "arm64") throw new VmError("KVM cannot run an arm64 guest on this x86_64 host: use APT_OSTREE_QEMU_ACCEL=tcg");
  return [
    "-nodefaults", "-no-user-config", "-display", "none",
    ...machine.machine, ...machine.firmware, "-accel", accel === "kvm" ? "kvm" : "tcg,thread=multi", "-cpu", accel === "kvm" ? "host" : machine.tcgCpu,
    "-smp", String(options.cpus ?? 2), "-m", String(options.memoryMiB ?? 1536),
    "-drive", driveSpec(options),
    "-netdev", `user,id=${NETDEV_ID}`, "-device", `virtio-net-pci,netdev=${NETDEV_ID}`,
    ...(options.qmpSocket ? ["-qmp", `unix:${options.qmpSocket},server=on,wait=off`] : []),
    ...(options.rtcBase ? ["-rtc", `base=${options.rtcBase.toISOString().slice(0, 19)}`] : []),
    "-device", "i6300esb", "-action", "watchdog=reset",
    "-serial", `file:${options.serialLog}`,
    ...(options.testConsoleSocket
      ? ["-chardev", `socket,id=testconsole,path=${options.testConsoleSocket},server=on,wait=off`, "-device", "virtio-serial-pci", "-device", `virtserialport,chardev=testconsole,name=${TEST_CONSOLE_PORT}`]
      : []),
  ];
}

export function accelFromEnv(env: NodeJS.ProcessEnv = process.env): Accel {
  const value = env.APT_OSTREE_QEMU_ACCEL ?? "tcg";
  if (value !== "tcg" && value !== "kvm") throw new VmError(`APT_OSTREE_QEMU_ACCEL must be tcg or kvm, not '${value}'`);
  return value;
}

export class Vm {
  private child: ChildProcess | null = null;
  private exited: Promise<number | null> | null = null;
  private stderr = "";

  constructor(readonly options: VmOptions) {}

  async start(): Promise<void> {
    if (this.child) throw new VmError("the VM is already running");
    await (await open(this.options.serialLog, "w")).close();
    const args = qemuArgs(this.options);
    const machine = MACHINES[this.options.arch ?? "amd64"];
    const child = spawn(machine.qemu, args, { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.on("data", (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve, reject) => {
      child.once("error", (error: NodeJS.ErrnoException) => reject(new VmError(error.code === "ENOENT" ? `${machine.qemu} is not installed (bash scripts/setup.sh installs ${machine.package})` : error.message)));
      child.once("exit", (code) => resolve(code));
    });
    this.child = child;
    // Fail fast when qemu refuses its arguments or the disk.
    const early = await Promise.race([this.exited, new Promise((resolve) => setTimeout(resolve, 500, "running"))]);
    if (early !== "running") throw new VmError(`qemu exited at start (${String(early)}): ${this.stderr.trim()}`);
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  async serial(): Promise<string> {
    return readFile(this.options.serialLog, "utf8").catch(() => "");
  }

  /** Waits until the serial log matches `pattern` `count` times (counting from the VM's start). */
  async waitForSerial(pattern: RegExp, timeoutMs: number, count = 1): Promise<string> {
    const global = new RegExp(pattern.source, pattern.flags.includes("g") ? pattern.flags : `${pattern.flags}g`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await this.serial();
      if ((text.match(global)?.length ?? 0) >= count) return text;
      if (!this.running) throw new VmError(`the VM exited before its serial log showed ${pattern} (${this.stderr.trim() || "no qemu error"})`);
      if (Date.now() > deadline) throw new VmError(`no ${pattern} on the serial console within ${Math.round(timeoutMs / 1000)} s; last lines:\n${text.trimEnd().split("\n").slice(-15).join("\n")}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  /** Plugs the guest's network cable out (false) or in (true), as qemu's `set_link` does; needs `qmpSocket`. */
  async setLink(up: boolean): Promise<void> {
    if (!this.options.qmpSocket) throw new VmError("setLink needs the VM started with a qmpSocket");
    await qmpCommand(this.options.qmpSocket, "set_link", { name: NETDEV_ID, up });
  }

  /** The power cut: SIGKILL, so nothing the guest had not yet written reaches the disk. */
  async powerCut(): Promise<void> {
    await this.stop();
  }

  async stop(): Promise<void> {
    if (!this.child) return;
    if (this.running) this.child.kill("SIGKILL");
    await this.exited?.catch(() => undefined);
    this.child = null;
  }
}
