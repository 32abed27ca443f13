/**
 * What a soak run (a power-cut trial, a fault scenario) stands on: its own folder with a copy of
 * the fixture's server data, a qcow2 overlay over the enrolled v1 disk opened `cache=none`, the
 * real `serve` with the chosen release on the channel, and the VM it powers on. The server can be
 * killed with -9 and started again on the same data, as an operator's crash would.
 */
import { cp, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { TestConsole } from "../../qemu/test-console.ts";
import { Vm, accelFromEnv, type VmOptions } from "../../qemu/vm.ts";
import { replayDurableWrites, WriteLogTail, type ReplayStats } from "../../qemu/write-log.ts";
import { serveRelease, type PowerCutFixture, type Release } from "./power-cut/fixture.ts";
import { SoakServer } from "./power-cut/server.ts";
import { ThrottleProxy } from "./throttle-proxy.ts";
import { freePort } from "../helpers/mosquitto.ts";

export interface RigOptions {
  vm?: Partial<VmOptions>;
  /**
   * A disk with a volatile write cache: until the first power cut the VM runs on a raw copy of
   * the enrolled disk with every write and flush logged, and the cut keeps only what the guest's
   * flushes covered (qemu/write-log.ts). Otherwise a qcow2 overlay opened cache=none.
   */
  strict?: boolean;
  /** Serve HTTP to the device through a proxy at this rate per connection (the server moves to another port). */
  throttleBytesPerSecond?: number;
}

/** A report the device sent, as the server's device events list it. */
export type DeviceReport = { state: string; command?: string; [key: string]: unknown };

export interface DeviceView {
  device: any;
  events: any[];
}

export class SoakRig {
  private powerOns = 0;
  vm: Vm | null = null;
  /** Strict mode: the first cut's replay, once it happened. */
  replay: ReplayStats | null = null;

  private constructor(
    readonly fixture: PowerCutFixture,
    readonly dir: string,
    private serverNow: SoakServer,
    private readonly httpPort: number,
    private readonly vmOptions: Partial<VmOptions>,
    /** The proxy between the device and the server's HTTP, when throttled. */
    readonly proxy: ThrottleProxy | null,
    readonly strict: boolean,
  ) {}

  /** Sets up `dir` (emptied first) for a run that rolls out `release`. */
  static async open(fixture: PowerCutFixture, dir: string, release: Release, options: RigOptions = {}): Promise<SoakRig> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await cp(fixture.baseData, join(dir, "data"), { recursive: true });
    if (options.strict) {
      await execa("cp", ["--sparse=always", fixture.baseDisk, join(dir, "live.raw")]);
      await writeFile(join(dir, "writes.log"), "");
    } else {
      await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-b", fixture.baseDisk, "-F", "raw", join(dir, "disk.qcow2")]);
    }
    await serveRelease(fixture, release);
    // The disk names the fixture's port: a throttled run puts the proxy there and the server behind it.
    const httpPort = options.throttleBytesPerSecond ? await freePort() : fixture.httpPort;
    const server = await SoakServer.start(SoakRig.serverOptions(fixture, dir, httpPort));
    const proxy = options.throttleBytesPerSecond
      ? await ThrottleProxy.start({ listenPort: fixture.httpPort, targetPort: httpPort, bytesPerSecond: options.throttleBytesPerSecond })
      : null;
    return new SoakRig(fixture, dir, server, httpPort, options.vm ?? {}, proxy, options.strict ?? false);
  }

  private static serverOptions(fixture: PowerCutFixture, dir: string, httpPort: number) {
    const { repo, tlsDir, trust, mqttPort, enrollmentSecretFile } = fixture;
    return { repo, data: join(dir, "data"), tlsDir, trust, httpPort, mqttPort, enrollmentSecretFile };
  }

  get server(): SoakServer {
    return this.serverNow;
  }

  get consoleSocket(): string {
    return join(this.dir, "console.sock");
  }

  console(): TestConsole {
    return new TestConsole(this.consoleSocket);
  }

  /** Starts the VM (a cold boot), its serial log in serial-N.log for the Nth power-on. */
  async powerOn(): Promise<Vm> {
    this.powerOns++;
    const disk: Partial<VmOptions> = !this.strict
      ? { disk: join(this.dir, "disk.qcow2"), diskFormat: "qcow2" }
      : this.replay === null
        ? { disk: join(this.dir, "live.raw"), diskFormat: "raw", writeLog: join(this.dir, "writes.log") }
        : { disk: join(this.dir, "disk.raw"), diskFormat: "raw" };
    const vm = new Vm({
      disk: "", ...disk, diskCache: "none", arch: this.fixture.arch,
      serialLog: join(this.dir, `serial-${this.powerOns}.log`), accel: accelFromEnv(), testConsoleSocket: this.consoleSocket, qmpSocket: join(this.dir, "qmp.sock"),
      ...this.vmOptions,
    });
    await vm.start();
    this.vm = vm;
    return vm;
  }

  /**
   * Strict, before the first cut: waits (at most `maxMs`) until the guest's newest write is one no
   * flush covers yet, so the cut has something to lose; false when none came in time. The guest
   * writes in bursts that end with a flush, so a cut timed by the clock alone almost never does.
   */
  async awaitUnflushedWrite(maxMs: number): Promise<boolean> {
    if (!this.strict || this.replay !== null) return false;
    const tail = new WriteLogTail(join(this.dir, "writes.log"));
    const deadline = Date.now() + maxMs;
    while (Date.now() < deadline) {
      if (await tail.unflushedWriteLast()) return true;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return false;
  }

  /**
   * Cuts the power (SIGKILL of qemu). Strict, at the first cut: the disk the VM powers on with
   * next is the enrolled disk plus only the writes its flushes covered.
   */
  async cutPower(): Promise<ReplayStats | null> {
    await this.vm?.powerCut();
    if (!this.strict || this.replay !== null) return null;
    const disk = join(this.dir, "disk.raw");
    await execa("cp", ["--sparse=always", this.fixture.baseDisk, disk]);
    this.replay = await replayDurableWrites(join(this.dir, "writes.log"), disk);
    // The log stays until close: with the enrolled disk it rebuilds the cut disk of a failed trial.
    await rm(join(this.dir, "live.raw"), { force: true });
    return this.replay;
  }

  /** The server's record of the device and its events, newest first. */
  async device(): Promise<DeviceView> {
    return (await this.serverNow.api(`devices/${this.fixture.deviceId}`)) as DeviceView;
  }

  /** The reports for `command` the server received since `since` (ms), newest first. */
  static reports(events: any[], command: string, since = 0): DeviceReport[] {
    return events.filter((e) => e.kind === "report" && e.report.command === command && Date.parse(e.at) >= since).map((e) => e.report as DeviceReport);
  }

  /** Rolls the channel's current release out to the fixture's device alone; returns the command id. */
  async rollOut(release: Release): Promise<string> {
    const { rollout } = await this.serverNow.api("rollouts", { ref: this.fixture.ref, select: { devices: [this.fixture.deviceId] }, waves: "100%", waveDelay: "0s", waveTimeout: "2h", maxFailures: "100%" });
    if (rollout.version !== release.version) throw new Error(`the rollout is for version ${rollout.version}, not ${release.version}: the channel's manifest was not switched`);
    return rollout.id as string;
  }

  /** `kill -9` of serve: no shutdown, nothing flushed that was not already. */
  async killServer(): Promise<void> {
    await this.serverNow.kill();
  }

  /** serve again on the same data folder and ports. */
  async restartServer(): Promise<void> {
    await this.serverNow.stop();
    const log = this.serverNow.log();
    this.serverNow = await SoakServer.start(SoakRig.serverOptions(this.fixture, this.dir, this.httpPort));
    this.serverNow.prependLog(log);
  }

  /** Stops the VM and the server; keeps the folder (with the server's log) when `keep`. */
  async close(keep: boolean): Promise<void> {
    await this.vm?.stop();
    await this.proxy?.close();
    await this.serverNow.stop();
    if (keep) await writeFile(join(this.dir, "serve.log"), this.serverNow.log());
    else await rm(this.dir, { recursive: true, force: true });
  }
}
