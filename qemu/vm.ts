/**
 * Runs a disk image in qemu: serial console to a log file, user-mode networking (the guest
 * reaches the host's loopback services at 10.0.2.2), an i6300esb watchdog that resets a hung
 * guest, KVM where it runs stock kernels, TCG otherwise (DESIGN.md 5.5: this host's KVM does
 * not). A guest reboot stays inside the same qemu process, so one VM object spans an update's
 * reboots; `stop()` kills it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { open, readFile } from "node:fs/promises";
import { AptOstreeError } from "../shared/errors.ts";

/** Where a user-mode-networked guest sees the host. */
export const HOST_FROM_GUEST = "10.0.2.2";

export type Accel = "tcg" | "kvm";

export interface VmOptions {
  disk: string;
  serialLog: string;
  memoryMiB?: number;
  cpus?: number;
  accel?: Accel;
}

export class VmError extends AptOstreeError {
  constructor(message: string) {
    super("E_VM", message);
  }
}

export function qemuArgs(options: VmOptions): string[] {
  const accel = options.accel ?? "tcg";
  return [
    "-nodefaults", "-no-user-config", "-display", "none",
    "-machine", "pc", "-accel", accel === "kvm" ? "kvm" : "tcg,thread=multi", "-cpu", accel === "kvm" ? "host" : "max",
    "-smp", String(options.cpus ?? 2), "-m", String(options.memoryMiB ?? 1536),
    "-drive", `file=${options.disk},format=raw,if=virtio,cache=unsafe`,
    "-nic", "user,model=virtio-net-pci",
    "-device", "i6300esb", "-action", "watchdog=reset",
    "-serial", `file:${options.serialLog}`,
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
    const child = spawn("qemu-system-x86_64", qemuArgs(this.options), { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.on("data", (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve, reject) => {
      child.once("error", (error: NodeJS.ErrnoException) => reject(new VmError(error.code === "ENOENT" ? "qemu-system-x86_64 is not installed (bash scripts/setup.sh installs qemu-system-x86)" : error.message)));
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

  async stop(): Promise<void> {
    if (!this.child) return;
    if (this.running) this.child.kill("SIGKILL");
    await this.exited?.catch(() => undefined);
    this.child = null;
  }
}
