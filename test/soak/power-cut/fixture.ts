/**
 * What every power-cut trial starts from, made once per campaign: a real compose of
 * appliance-minimal (v1) shipping a root of trust, a good v2 and a v3 whose required health
 * check fails (derived from v1 in seconds, test/helpers/derived-release.ts), each with its signed
 * manifest kept aside so a trial chooses which one the channel serves; and a disk on which v1
 * booted once, enrolled with the server over TLS and shut down cleanly, with the server's data
 * folder as it was then. A trial copies the data folder and puts a qcow2 overlay over the disk.
 */
import { randomBytes } from "node:crypto";
import { copyFile, cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import type { Logger } from "../../../shared/log.ts";
import { manifestPath } from "../../../shared/wire/manifest.ts";
import { expiryAfterDays } from "../../../shared/trust/root-edit.ts";
import { DEFAULT_RECIPES_DIR } from "../../../server/cli/defaults.ts";
import { compose } from "../../../server/compose/compose.ts";
import { createComposeProgress } from "../../../server/compose/progress.ts";
import { initRoot } from "../../../server/keys/root-versions.ts";
import { trustPublishKeys } from "../../../server/keys/trust-dir.ts";
import { publish } from "../../../server/publish/publish.ts";
import { initTlsDir } from "../../../server/tls/tls-dir.ts";
import { HOST_FROM_GUEST, Vm, accelFromEnv, type VmArchitecture } from "../../../qemu/vm.ts";
import { TestConsole } from "../../../qemu/test-console.ts";
import { SERVER_CLI } from "../../helpers/cli.ts";
import { publishDerivedRelease } from "../../helpers/derived-release.ts";
import { freePort } from "../../helpers/mosquitto.ts";
import { until } from "../../helpers/wait.ts";
import { SoakServer } from "./server.ts";

export interface Release {
  commit: string;
  version: string;
  /** The signed channel manifest publish wrote for it, kept aside. */
  manifestFile: string;
}

export interface PowerCutFixture {
  dir: string;
  arch: VmArchitecture;
  ref: string;
  repo: string;
  trust: string;
  tlsDir: string;
  enrollmentSecretFile: string;
  httpPort: number;
  mqttPort: number;
  /** v1 booted once, enrolled and shut down cleanly (raw). */
  baseDisk: string;
  /** The server's data folder right after the enrollment. */
  baseData: string;
  deviceId: string;
  bootTries: number;
  /**
   * v2: good; v3: its required health check fails; v4: good and big (a 48 MiB file of random bytes:
   * a download long enough to cut the network or fill the disk in the middle of).
   */
  releases: { v1: Release; v2: Release; v3: Release; v4?: Release };
}

/** The size of v4's random file. */
export const BIG_RELEASE_BYTES = 48 * 1024 * 1024;

export const BOOT_TRIES = 2;

/** Manifests stay valid for 30 days: a fixture is reused across sessions, and a device's clock may run a day ahead. */
const MANIFEST_SECONDS = 30 * 86400;

/** `bigRelease`: publish v4 too (a minute or two more), for the faults that cut a download in the middle. */
export async function preparePowerCutFixture(options: { dir: string; arch: VmArchitecture; cacheDir: string; log: Logger; progress?: (line: string) => void; bigRelease?: boolean }): Promise<PowerCutFixture> {
  const { dir, arch, log } = options;
  const say = options.progress ?? (() => undefined);
  const ref = `debian/bookworm/qemu-${arch}/appliance-minimal`;
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, "manifests"), { recursive: true });
  const repo = join(dir, "repo");
  const trust = join(dir, "trust");
  const tlsDir = join(dir, "tls");
  await initRoot(trust, { rootKeys: 1, thresholds: {}, expires: expiryAfterDays(new Date(), 30) });
  await initTlsDir(tlsDir, ["localhost", "127.0.0.1", HOST_FROM_GUEST]);
  const enrollmentSecretFile = join(dir, "enrollment-secret");
  await writeFile(enrollmentSecretFile, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
  const keys = await trustPublishKeys(trust);

  say(`composing appliance-minimal for qemu-${arch} (v1)`);
  await compose({ recipesDir: DEFAULT_RECIPES_DIR, image: "appliance-minimal", machine: `qemu-${arch}`, repo, cacheDir: options.cacheDir, indexMaxAgeSeconds: 7 * 86400, trustRoot: join(trust, "root.json"), log, progress: createComposeProgress(log) });
  const publishOptions = { repo, ref, ...keys, channel: "stable", deltaDepth: 3, scratchDelta: false, expiresInSeconds: MANIFEST_SECONDS, log };
  const v1 = await publish(publishOptions);
  const keep = async (name: string) => {
    const file = join(dir, "manifests", `${name}.json`);
    await copyFile(join(repo, manifestPath("stable", ref)), file);
    return file;
  };
  const releases = {
    v1: { commit: v1.commit, version: v1.version, manifestFile: await keep("v1") },
    v2: { ...(await publishDerivedRelease({ repo, ref, keys, workDir: dir, log, base: v1.commit, expiresInSeconds: MANIFEST_SECONDS, files: { "usr/lib/apt-ostree-soak/release": { content: "2\n" } } })), manifestFile: "" },
    v3: { commit: "", version: "", manifestFile: "" },
  };
  releases.v2.manifestFile = await keep("v2");
  const v3 = await publishDerivedRelease({
    repo, ref, keys, workDir: dir, log, base: v1.commit, expiresInSeconds: MANIFEST_SECONDS,
    files: { "usr/etc/apt-ostree/health.d/required/50-soak-broken": { content: "#!/bin/sh\necho 'this release is broken on purpose' >&2\nexit 1\n", mode: 0o755 } },
  });
  releases.v3 = { ...v3, manifestFile: await keep("v3") };
  let releasesAll: PowerCutFixture["releases"] = releases;
  if (options.bigRelease) {
    say("publishing v4 (48 MiB more)");
    const v4 = await publishDerivedRelease({ repo, ref, keys, workDir: dir, log, base: v1.commit, expiresInSeconds: MANIFEST_SECONDS, files: { "usr/lib/apt-ostree-soak/big": { content: randomBytes(BIG_RELEASE_BYTES) } } });
    releasesAll = { ...releases, v4: { ...v4, manifestFile: await keep("v4") } };
  }

  const httpPort = await freePort();
  const mqttPort = await freePort();
  const baseData = join(dir, "data.base");
  const server = await SoakServer.start({ repo, data: baseData, tlsDir, httpPort, mqttPort, trust, enrollmentSecretFile });
  try {
    say("building the v1 disk");
    const baseDisk = join(dir, "base.img");
    await execa(process.execPath, [SERVER_CLI, "image", "build", "--repo", repo, "--ref", ref, "--commit", v1.commit, "--out", baseDisk,
      "--server", `https://${HOST_FROM_GUEST}:${httpPort}`, "--mqtt", `mqtts://${HOST_FROM_GUEST}:${mqttPort}`, "--ca", join(tlsDir, "ca.pem"),
      "--boot-tries", String(BOOT_TRIES), "--enrollment-secret", enrollmentSecretFile, "--test-console"]);
    say("booting v1 once to enroll");
    const socket = join(dir, "console.sock");
    const vm = new Vm({ disk: baseDisk, arch, serialLog: join(dir, "base-serial.log"), accel: accelFromEnv(), testConsoleSocket: socket });
    await vm.start();
    try {
      const device = await until(async () => {
        const { devices } = await server.api("devices");
        return devices.length === 1 && devices[0].online && devices[0].booted?.commit === v1.commit ? devices[0] : null;
      }, "the v1 VM to enroll", 10 * 60_000 * (arch === "arm64" ? 3 : 1), { intervalMs: 2000, detail: async () => (await vm.serial()).split("\n").slice(-15).join("\n") });
      await vm.waitForSerial(/Boot healthy: no update on trial/, 5 * 60_000);
      // A clean shutdown, so the base disk is consistent; the console's shell dies with it.
      await new TestConsole(socket).run("systemctl poweroff", 60_000).catch(() => undefined);
      await until(() => !vm.running, "the VM to power off", 5 * 60_000, { intervalMs: 1000 });
      return { dir, arch, ref, repo, trust, tlsDir, enrollmentSecretFile, httpPort, mqttPort, baseDisk, baseData, deviceId: device.id, bootTries: BOOT_TRIES, releases: releasesAll };
    } finally {
      await vm.stop();
    }
  } finally {
    await server.stop();
  }
}

/** Puts a kept manifest back as the channel's current one (server-side files, already signed). */
export async function serveRelease(fixture: PowerCutFixture, release: Release): Promise<void> {
  await cp(release.manifestFile, join(fixture.repo, manifestPath("stable", fixture.ref)));
}

export async function readFixture(file: string): Promise<PowerCutFixture> {
  return JSON.parse(await readFile(file, "utf8")) as PowerCutFixture;
}
