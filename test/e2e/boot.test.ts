/**
 * The mission, end to end with nothing simulated: a qemu VM boots a disk built from a composed
 * qemu-amd64 image (qemu-arm64 with APT_OSTREE_E2E_ARCH=arm64, which `npm run test:e2e -- --arch
 * arm64` sets), enrolls with the real server over MQTT, and then
 *   1. v2 is rolled out: pulled over HTTP, staged, rebooted into, reported healthy;
 *   2. v3 fails a required health check: the GRUB counter runs out, GRUB boots v2, the agent
 *      makes the rollback permanent and reports it with the check's output; the rollout pauses;
 *   3. v4 cannot boot (its init exits, the kernel panics, panic=5 reboots): the counter runs
 *      out and the same rollback follows;
 *   4. v5 hangs during its health check (PID 1 frozen, so systemd stops petting the watchdog):
 *      the i6300esb watchdog resets the VM on each try, and the same rollback follows;
 *   5. the command and image keys are rotated (root version 3; the old ones revoked) and serve
 *      restarted with the new command key: v6, signed by the new keys only, is followed and
 *      boots healthy; v7, whose commit only the revoked image key signed, is refused and reported;
 *   6. a reboot command signed by the revoked command key, delivered by a broker the attacker runs
 *      with the server's own TLS identity, is refused by name and changes nothing.
 * Inside the VM, a root shell on a virtio port (image build --test-console) shows what the server
 * cannot: `ostree admin status`, the image keys stock ostree reads, the agent's journal.
 * The image ships the fleet's root of trust (compose --trust-root); the device walks the newer
 * root versions the repo publishes (docs/trust.md). Everything crosses the network over TLS:
 * HTTPS and MQTT over TLS with a private CA (tls init) that the disk pins (image build --ca).
 * Each step is asserted from the server's API and from the VM's serial console.
 * v1 is a real compose; v2-v4 are v1's tree with a file added (test/helpers/derived-release.ts),
 * so the scenario composes once. Boot tries are 2, the fewest that show the counter counting.
 */
import { randomBytes } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeFile } from "../../shared/fs/remove-file.ts";
import { createLogger } from "../../shared/log.ts";
import { readSecretKeyFile } from "../../shared/sign/keys.ts";
import { expiryAfterDays } from "../../shared/trust/root-edit.ts";
import { initRoot } from "../../server/keys/root-versions.ts";
import { commandKeyFile, readTrustDir, secretsFor, trustPublishKeys } from "../../server/keys/trust-dir.ts";
import type { PublishKeys } from "../../server/publish/publish.ts";
import { DEFAULT_RECIPES_DIR } from "../../server/cli/defaults.ts";
import { defaultCacheDir } from "../../server/compose/cache.ts";
import { compose } from "../../server/compose/compose.ts";
import { createComposeProgress } from "../../server/compose/progress.ts";
import { publish } from "../../server/publish/publish.ts";
import { HOST_FROM_GUEST, Vm, accelFromEnv } from "../../qemu/vm.ts";
import { adminApi } from "../helpers/admin-api.ts";
import { trustingFetch } from "../helpers/serve-process.ts";
import { initTlsDir } from "../../server/tls/tls-dir.ts";
import { SERVER_CLI } from "../helpers/cli.ts";
import { publishDerivedRelease } from "../helpers/derived-release.ts";
import { TEST_ADMIN_TOKEN } from "../helpers/server-settings.ts";
import { until } from "../helpers/wait.ts";
import { startRogueBroker } from "../helpers/rogue-broker.ts";
import { TestConsole } from "../../qemu/test-console.ts";
import { signCommand } from "../../shared/wire/command.ts";
import { DEFAULT_TOPIC_PREFIX, deviceTopic } from "../../shared/wire/topics.ts";

const ARCH = process.env.APT_OSTREE_E2E_ARCH ?? "amd64";
if (ARCH !== "amd64" && ARCH !== "arm64") throw new Error(`APT_OSTREE_E2E_ARCH must be amd64 or arm64, not '${ARCH}'`);
const MACHINE = `qemu-${ARCH}`;
/** arm64 runs under full emulation on this x86_64 host: its compose and boots take about three times as long. */
const MINUTE = 60_000 * (ARCH === "arm64" ? 3 : 1);
const REF = `debian/bookworm/${MACHINE}/appliance-minimal`;
const BOOT_TRIES = 2;
const ARTIFACTS = new URL("../artifacts/", import.meta.url).pathname;
const log = createLogger({ name: "e2e", level: process.env.APT_OSTREE_LOG_LEVEL ?? "warn" });

const cache = defaultCacheDir();
const dir = join(cache, ARCH === "amd64" ? "e2e" : `e2e-${ARCH}`);
const SUFFIX = ARCH === "amd64" ? "" : `-${ARCH}`;
const repo = join(dir, "repo");
const trust = join(dir, "trust");
const tlsDir = join(dir, "tls");
let trustingCa: typeof fetch = fetch;
/** The trust directory's image and release keys and roots, read again after each rotation. */
let keys: PublishKeys;
let server: ChildProcess;
let httpPort = 0;
let mqttPort = 0;
let vm: Vm;
/** A root shell inside the VM (image build --test-console). */
let vmConsole: TestConsole;
/** Set by the rotation step: the command key it revoked, and the release the device then runs. */
let revokedCommandKeyId = "";
let v6Commit = "";
let deviceId = "";
let loopsBefore = "";
/** Measured while the scenario runs (not asserted): docs/BENCHMARKS.md quotes them. */
const timings: Record<string, number> = {};
const runStarted = Date.now();

/** Bytes the device reported downloading for a rollout's command. */
async function downloadedBytes(commandId: string): Promise<number> {
  const { events } = await api(`devices/${deviceId}`);
  const totals = events.filter((e: any) => e.kind === "report" && e.report.command === commandId && e.report.progress).map((e: any) => e.report.progress.total as number);
  return totals.length > 0 ? Math.max(...totals) : 0;
}

/** Seconds from the device's `from` report to its `to` report for a rollout's command (server receive times). */
async function secondsBetweenReports(commandId: string, from: string, to: string): Promise<number> {
  const { events } = await api(`devices/${deviceId}`);
  const at = (state: string) => events.filter((e: any) => e.kind === "report" && e.report.command === commandId && e.report.state === state).map((e: any) => Date.parse(e.at)).sort()[0];
  return (at(to) - at(from)) / 1000;
}

/** Kernel starts on the serial console: one per boot, panicked ones included. */
const BOOT = /Linux version \d/;
const LOGIN = /login: /;
const PANIC = /Kernel panic - not syncing/;

const callApi = adminApi(() => `https://127.0.0.1:${httpPort}`, () => trustingCa);
async function api(path: string, body?: unknown): Promise<any> {
  const { status, json } = await callApi(path, body);
  if (status >= 400) throw new Error(`${path}: ${status} ${JSON.stringify(json)}`);
  return json;
}

/** Polls every 2 s; a timeout shows the device's record and the serial console's tail. */
function untilDevice<T>(what: string, timeoutMs: number, probe: () => Promise<T | null | undefined | false>): Promise<T> {
  return until(probe, what, timeoutMs, {
    intervalMs: 2000,
    detail: async () => `device: ${JSON.stringify(await device().catch(() => null))}\nserial tail:\n${((await vm?.serial()) ?? "").trimEnd().split("\n").slice(-20).join("\n")}`,
  });
}

async function device(): Promise<any> {
  return (await api(`devices/${deviceId}`)).device;
}

/** The device's `rolled-back` report about `commit`, from its event history. */
async function rolledBackReport(commit: string): Promise<any> {
  return untilDevice(`the rolled-back report about ${commit.slice(0, 12)}`, 20 * MINUTE, async () => {
    const { events } = await api(`devices/${deviceId}`);
    return events.find((e: any) => e.kind === "report" && e.report.state === "rolled-back" && e.report.rolledBack?.from.commit === commit)?.report;
  });
}

async function bootCount(pattern = BOOT): Promise<number> {
  return ((await vm.serial()).match(new RegExp(pattern.source, "g")) ?? []).length;
}

async function rollOut(version: string): Promise<string> {
  const { rollout } = await api("rollouts", { ref: REF, select: { devices: [deviceId] }, waves: "100%", waveDelay: "0s", waveTimeout: "30m", maxFailures: "0%" });
  expect(rollout.version).toBe(version);
  return rollout.id as string;
}

beforeAll(async () => {
  loopsBefore = (await execa("losetup", ["-a"])).stdout;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await mkdir(ARTIFACTS, { recursive: true });
  await initRoot(trust, { rootKeys: 1, thresholds: {}, expires: expiryAfterDays(new Date(), 30) });
  // The VM reaches the host at 10.0.2.2: the server's certificate names it.
  const tls = await initTlsDir(tlsDir, ["localhost", "127.0.0.1", HOST_FROM_GUEST]);
  trustingCa = trustingFetch(await readFile(tls.ca, "utf8"));
  keys = await trustPublishKeys(trust);
  // --auto-accept admits the VM because its disk carries the fleet enrollment secret.
  await writeFile(join(dir, "enrollment-secret"), `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });

  await compose({ recipesDir: DEFAULT_RECIPES_DIR, image: "appliance-minimal", machine: MACHINE, repo, cacheDir: cache, indexMaxAgeSeconds: 7 * 86400, trustRoot: join(trust, "root.json"), log, progress: createComposeProgress(log) });
  await publish({ repo, ref: REF, ...keys, channel: "stable", deltaDepth: 3, scratchDelta: false, expiresInSeconds: 86400, log });

  await startServe();

  const disk = join(dir, "disk.img");
  const built = await execa(process.execPath, [SERVER_CLI, "image", "build", "--repo", repo, "--ref", REF, "--out", disk,
    "--server", `https://${HOST_FROM_GUEST}:${httpPort}`, "--mqtt", `mqtts://${HOST_FROM_GUEST}:${mqttPort}`, "--ca", join(tlsDir, "ca.pem"), "--boot-tries", String(BOOT_TRIES), "--enrollment-secret", join(dir, "enrollment-secret"), "--test-console", "--json"], { all: true });
  expect(JSON.parse(built.stdout.trim().split("\n").at(-1)!).version).toBe("1");
  expect((await execa("losetup", ["-a"])).stdout).toBe(loopsBefore);

  vm = new Vm({ disk, arch: ARCH, serialLog: join(ARTIFACTS, `e2e-serial${SUFFIX}.log`), accel: accelFromEnv(), testConsoleSocket: join(dir, "console.sock") });
  vmConsole = new TestConsole(join(dir, "console.sock"));
  await vm.start();
  timings.vmStartedAt = Date.now();
}, 40 * MINUTE);

/** serve with the trust directory's current command key; after the first start, on the same ports (the disk names them). */
async function startServe(): Promise<void> {
  server = spawn(process.execPath, [SERVER_CLI, "serve", "--repo", repo, "--data", join(dir, "data"), "--host", "127.0.0.1", "--http-port", String(httpPort), "--mqtt-port", String(mqttPort), "--mqtt-ws-port", "off", "--tls-dir", tlsDir, "--auto-accept", "--enrollment-secret-file", join(dir, "enrollment-secret"), "--key", await commandKeyFile(trust)], {
    env: { ...process.env, APT_OSTREE_ADMIN_TOKEN: TEST_ADMIN_TOKEN },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const seen: string[] = [];
  for await (const line of createInterface({ input: server.stdout! })) {
    seen.push(line);
    if (line.startsWith("MQTT on")) break;
  }
  httpPort = Number(/on https:\/\/127\.0\.0\.1:(\d+)\/repo\//.exec(seen.join("\n"))![1]);
  mqttPort = Number(/MQTT on mqtts:\/\/127\.0\.0\.1:(\d+)/.exec(seen.join("\n"))![1]);
}

async function stopServe(): Promise<void> {
  const exited = new Promise((resolve) => server.once("exit", resolve));
  server.kill("SIGTERM");
  await exited;
}

afterAll(async () => {
  timings.wholeRunSeconds = (Date.now() - runStarted) / 1000;
  await writeFile(join(ARTIFACTS, `e2e-timings${SUFFIX}.json`), `${JSON.stringify(timings, null, 2)}\n`);
  await vm?.stop();
  server?.kill("SIGTERM");
  await removeFile(join(dir, "disk.img"));
});

describe("a qemu device, end to end", () => {
  it("boots v1 from the built disk, enrolls over MQTT and reports itself", async () => {
    await vm.waitForSerial(LOGIN, 5 * MINUTE);
    const enrolled = await untilDevice("the device to enroll", 3 * MINUTE, async () => {
      const { devices } = await api("devices");
      // Online comes with the MQTT connection; the booted deployment with the first report.
      return devices.length === 1 && devices[0].online && devices[0].booted ? devices[0] : null;
    });
    deviceId = enrolled.id;
    timings.bootToOnlineSeconds = (Date.now() - timings.vmStartedAt!) / 1000;
    expect(enrolled.enrollment).toBe("accepted");
    expect(enrolled.booted.version).toBe("1");
    expect(enrolled.architecture).toBe(ARCH);
    expect(await vm.serial()).toMatch(/Started .*apt-ostreed\.service/);
    await vm.waitForSerial(/Boot healthy: no update on trial/, 2 * MINUTE);
  }, 10 * MINUTE);

  it("v2: pulls, stages, reboots into it and reports healthy; the rollout completes", async () => {
    const v2 = await publishDerivedRelease({ repo, ref: REF, keys, workDir: dir, log, files: { "usr/lib/apt-ostree-e2e/release": { content: "2\n" } } });
    const boots = await bootCount();
    const started = Date.now();
    const id = await rollOut("2");
    await untilDevice("v2 to be staged", 5 * MINUTE, async () => (await device()).staged?.version === "2");
    const healthy = await untilDevice("v2 healthy", 10 * MINUTE, async () => {
      const d = await device();
      return d.state === "healthy" && d.booted.commit === v2.commit ? d : null;
    });
    timings.v2RolloutToHealthySeconds = (Date.now() - started) / 1000;
    timings.v2DownloadBytes = await downloadedBytes(id);
    timings.v2RebootToHealthySeconds = await secondsBetweenReports(id, "rebooting", "healthy");
    expect(timings.v2RebootToHealthySeconds).toBeGreaterThan(0);
    expect(timings.v2DownloadBytes).toBeGreaterThan(0);
    expect(healthy.rollback.version).toBe("1");
    expect(await bootCount()).toBe(boots + 1);
    // The boot units' own words (their output also goes to the kernel log): the health check
    // passed on the agent's verdict, then the bless unit, after boot-complete.target, cleared the counter.
    await vm.waitForSerial(/apt-ostree: boot blessed/, 2 * MINUTE, 2);
    const thisBoot = (await vm.serial()).slice((await vm.serial()).lastIndexOf("Linux version"));
    expect(thisBoot).toMatch(/Boot healthy: 2 passed its health checks\./);
    expect(thisBoot.indexOf("apt-ostree: boot blessed")).toBeGreaterThan(thisBoot.indexOf("Boot healthy: 2"));
    const { rollout } = await untilDevice("the rollout to complete", 2 * MINUTE, async () => {
      const r = await api(`rollouts/${id}`);
      return r.rollout.progress.state === "completed" ? r : null;
    });
    expect(rollout.version).toBe("2");
  }, 20 * MINUTE);

  it("v3 fails its required health check: the counter runs out, GRUB boots v2, the rollback is made permanent and reported", async () => {
    const v3 = await publishDerivedRelease({
      repo, ref: REF, keys, workDir: dir, log,
      files: { "usr/etc/apt-ostree/health.d/required/50-e2e-broken": { content: "#!/bin/sh\necho 'e2e-v3: required check failed' > /dev/kmsg\necho 'this release is broken on purpose' >&2\nexit 1\n", mode: 0o755 } },
    });
    const boots = await bootCount();
    const started = Date.now();
    const id = await rollOut("3");
    const report = await rolledBackReport(v3.commit);
    timings.v3RolloutToRolledBackSeconds = (Date.now() - started) / 1000;
    timings.v3DownloadBytes = await downloadedBytes(id);
    expect(report.booted.version).toBe("2");
    expect(report.staged).toBeNull();
    expect(report.pending).toBeNull();
    expect(report.rolledBack.to.version).toBe("2");
    expect(report.rolledBack.reason).toContain("50-e2e-broken");
    expect(report.rolledBack.reason).toContain("this release is broken on purpose");
    // Every try booted v3 and ran the failing check; then GRUB fell back to v2.
    expect(await bootCount(/e2e-v3: required check failed/)).toBe(BOOT_TRIES);
    // The reboot after each failed check came from apt-ostree-reboot-on-failure.service (the image's agent leaves it to the unit).
    expect(await bootCount(/apt-ostree: boot health check failed; rebooting \(boot_counter=\d\)/)).toBe(BOOT_TRIES);
    expect(await bootCount()).toBe(boots + BOOT_TRIES + 1);
    const { rollout } = await untilDevice("the rollout to pause", 2 * MINUTE, async () => {
      const r = await api(`rollouts/${id}`);
      return r.rollout.progress.state === "paused" ? r : null;
    });
    expect(rollout.pauseReason).toMatch(/rolled back/);
    await api(`rollouts/${id}/abort`, {});
  }, 30 * MINUTE);

  it("v4 cannot boot (its init exits, the kernel panics): GRUB falls back after the tries and the rollback is reported", async () => {
    const v2 = (await device()).booted.commit as string;
    const v4 = await publishDerivedRelease({
      repo, ref: REF, keys, workDir: dir, log, base: v2,
      files: { "usr/lib/systemd/systemd": { content: "#!/bin/sh\necho 'e2e-v4: init exits'\nexit 1\n", mode: 0o755 } },
    });
    const panics = await bootCount(PANIC);
    const boots = await bootCount();
    const started = Date.now();
    const id = await rollOut("4");
    const report = await rolledBackReport(v4.commit);
    timings.v4RolloutToRolledBackSeconds = (Date.now() - started) / 1000;
    timings.v4DownloadBytes = await downloadedBytes(id);
    expect(report.booted.commit).toBe(v2);
    expect(report.rolledBack.to.commit).toBe(v2);
    expect(report.rolledBack.reason).toMatch(/boot/i);
    expect(await bootCount(PANIC)).toBe(panics + BOOT_TRIES);
    expect(await bootCount()).toBe(boots + BOOT_TRIES + 1);
    await untilDevice("the rollout to pause", 2 * MINUTE, async () => (await api(`rollouts/${id}`)).rollout.progress.state === "paused");
    await api(`rollouts/${id}/abort`, {});
  }, 30 * MINUTE);

  it("v5 hangs during its health check (init frozen): the watchdog resets it, GRUB falls back after the tries and the rollback is reported", async () => {
    const base = (await device()).booted as { commit: string; version: string };
    const v5 = await publishDerivedRelease({
      repo, ref: REF, keys, workDir: dir, log, base: base.commit,
      // Freezing PID 1's cgroup stops systemd petting the watchdog: a real hang, as a wedged driver would cause.
      files: { "usr/etc/apt-ostree/health.d/required/50-e2e-hang": { content: "#!/bin/sh\necho 'e2e-v5: freezing init' > /dev/kmsg\necho 1 > /sys/fs/cgroup/init.scope/cgroup.freeze\nsleep 600\n", mode: 0o755 } },
    });
    const freezes = await bootCount(/e2e-v5: freezing init/);
    const boots = await bootCount();
    const started = Date.now();
    const id = await rollOut(v5.version);
    const report = await rolledBackReport(v5.commit);
    timings.v5RolloutToRolledBackSeconds = (Date.now() - started) / 1000;
    timings.v5DownloadBytes = await downloadedBytes(id);
    expect(report.booted.commit).toBe(base.commit);
    expect(report.rolledBack.reason).toContain(`${v5.version} booted but stopped before its health checks finished`);
    expect(await bootCount(/e2e-v5: freezing init/)).toBe(freezes + BOOT_TRIES);
    // Each try ended in the watchdog's reset: no panic, and no reboot by a unit or the agent.
    expect(await bootCount()).toBe(boots + BOOT_TRIES + 1);
    const serial = await vm.serial();
    const tail = serial.slice(serial.indexOf("e2e-v5: freezing init"));
    expect(tail).not.toMatch(PANIC);
    expect(tail).not.toMatch(/apt-ostree: boot health check failed/);
    await untilDevice("the rollout to pause", 2 * MINUTE, async () => (await api(`rollouts/${id}`)).rollout.progress.state === "paused");
    await api(`rollouts/${id}/abort`, {});
  }, 30 * MINUTE);

  it("follows a rotation of the command and image keys to v6, and refuses v7 signed by the revoked image key", async () => {
    const before = await readTrustDir(trust);
    const oldImage = secretsFor(before, before.newest.root, "image");
    revokedCommandKeyId = before.newest.root.roles.command.keyids[0]!;
    for (const role of ["command", "image"]) {
      const rotated = await execa(process.execPath, [SERVER_CLI, "keys", "rotate", "--trust", trust, "--role", role, "--repo", repo, "--json"]);
      expect(JSON.parse(rotated.stdout.trim().split("\n").at(-1)!)).toMatchObject({ complete: true });
    }
    await stopServe();
    await startServe();
    keys = await trustPublishKeys(trust);
    const base = (await device()).booted as { commit: string; version: string };
    const v6 = await publishDerivedRelease({ repo, ref: REF, keys, workDir: dir, log, base: base.commit, files: { "usr/lib/apt-ostree-e2e/release": { content: "6\n" } } });
    await rollOut(v6.version);
    await untilDevice("v6 healthy", 15 * MINUTE, async () => {
      const d = await device();
      return d.state === "healthy" && d.booted.commit === v6.commit ? d : null;
    });
    v6Commit = v6.commit;
    // Inside the VM: booted on v6, and the new image key written where stock ostree looks for it.
    expect(await vmConsole.check("ostree admin status")).toMatch(new RegExp(`^\\* debian ${v6.commit}\\.\\d+\\n\\s+Version: ${v6.version}$`, "m"));
    const newImage = (await readTrustDir(trust)).newest.root;
    const imageKeyFile = await vmConsole.check("cat /etc/ostree/trusted.ed25519.d/apt-ostree-image");
    expect(imageKeyFile).toContain(newImage.keys[newImage.roles.image.keyids[0]!]!.public);
    expect(imageKeyFile).not.toContain(before.newest.root.keys[before.newest.root.roles.image.keyids[0]!]!.public);
    // The same release machinery, but the commit carries only the revoked image key's signature.
    const v7 = await publishDerivedRelease({ repo, ref: REF, keys: { ...keys, imageKeys: oldImage }, workDir: dir, log, files: { "usr/lib/apt-ostree-e2e/release": { content: "7\n" } } });
    const boots = await bootCount();
    const id = await rollOut(v7.version);
    const failed = await untilDevice("v7 to be refused", 10 * MINUTE, async () => {
      const { events } = await api(`devices/${deviceId}`);
      return events.find((e: any) => e.kind === "report" && e.report.command === id && e.report.state === "failed")?.report;
    });
    expect(failed.error).toMatch(/which the root revoked \(root version 3\)/);
    expect((await device()).booted.commit).toBe(v6.commit);
    expect(await bootCount()).toBe(boots);
  }, 30 * MINUTE);

  it("refuses a reboot command signed by the revoked command key, even from a broker the attacker holds", async () => {
    const leaked = await readSecretKeyFile(join(trust, "keys", "revoked", `command-${revokedCommandKeyId.slice(0, 16)}.secret`));
    const commandTopic = deviceTopic(DEFAULT_TOPIC_PREFIX, deviceId, "cmd");
    const rejections = async () => (await vmConsole.check(`journalctl -u apt-ostreed -o cat | grep '"event":"agent.command.rejected"' || true`)).split("\n").filter(Boolean);
    const before = (await rejections()).length;
    const boots = await bootCount();
    // The attacker holds the leaked key and the server's own TLS identity, and serves the device's broker port.
    await stopServe();
    const rogue = await startRogueBroker({ host: "127.0.0.1", port: mqttPort, certFile: join(tlsDir, "server.pem"), keyFile: join(tlsDir, "server.key") });
    try {
      await rogue.retain(commandTopic, signCommand({ type: "reboot", id: "leaked-key-reboot", device: deviceId, issued: new Date().toISOString() }, [leaked]));
      const refused = await until(async () => ((await rejections()).length > before ? (await rejections()).slice(before) : null), "the device to refuse the forged command", 5 * MINUTE, { intervalMs: 5000 });
      expect(rogue.subscriptions).toContain(commandTopic);
      const line = JSON.parse(refused[0]!);
      expect(line.code).toBe("E_KEY_REVOKED");
      expect(line.reason).toMatch(/command is signed by key \w+, which the root revoked \(root version 3\)/);
      // Give a wrongly accepted reboot time to show.
      await new Promise((resolve) => setTimeout(resolve, 15_000));
      expect(await bootCount()).toBe(boots);
      expect(await vmConsole.check("ostree admin status")).toMatch(new RegExp(`^\\* debian ${v6Commit}\\.`, "m"));
    } finally {
      await rogue.close();
      await startServe();
    }
    await untilDevice("the device back on the real server", 5 * MINUTE, async () => (await device()).online);
  }, 15 * MINUTE);

  it("leaves no loop device behind", async () => {
    expect((await execa("losetup", ["-a"])).stdout).toBe(loopsBefore);
  });
});
