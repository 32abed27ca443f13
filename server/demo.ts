/**
 * The demo, the whole story on embedded defaults: a root of trust (keys init-root), compose the
 * example appliance with it and publish it signed by role (image and release keys);
 * start the server (HTTPS, embedded MQTT broker over TLS, dashboard; it holds only the command key) on loopback with a private CA
 * (tls init) whose certificate also names 10.0.2.2, where the VM reaches it; build a disk from the
 * release and boot it in qemu, where the agent enrolls; compose and publish the next release
 * (one package added) and roll it out: the VM downloads the delta, stages, reboots and reports
 * healthy. Prints refs, versions, sizes, deltas, the package diff, timings and the dashboard URL.
 * Everything lives under $APT_OSTREE_CACHE/demo (default /var/cache/apt-ostree/demo), recreated
 * on each run. `--keep-running` leaves the server and the VM up for the dashboard (Ctrl-C ends).
 */
import { DEFAULT_LIMITS } from "./config/limits.ts";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createLogger } from "../shared/log.ts";
import { diffPackages, renderPackageDiff } from "../shared/image/package-diff.ts";
import { keyId } from "../shared/sign/ed25519.ts";
import { expiryAfterDays } from "../shared/trust/root-edit.ts";
import { initRoot } from "./keys/root-versions.ts";
import { commandKeyFile, trustPublishKeys } from "./keys/trust-dir.ts";
import { buildDisk, deviceEtcFiles } from "../qemu/disk.ts";
import { HOST_FROM_GUEST, Vm, accelFromEnv } from "../qemu/vm.ts";
import { formatBytes } from "./cli/compose.ts";
import { DEFAULT_RECIPES_DIR } from "./cli/defaults.ts";
import { defaultCacheDir } from "./compose/cache.ts";
import { compose, type ComposeResult } from "./compose/compose.ts";
import { createComposeProgress } from "./compose/progress.ts";
import { resolveRevision } from "./db/revision.ts";
import { publish, type PublishResult } from "./publish/publish.ts";
import { startServer } from "./serve.ts";
import { initTlsDir } from "./tls/tls-dir.ts";

const MACHINE = "qemu-amd64";
const HTTP_PORT = 8080;
const MQTT_PORT = 1883;
const MINUTE = 60_000;

async function main(): Promise<void> {
  const keepRunning = process.argv.includes("--keep-running");
  const cache = defaultCacheDir();
  const demoDir = join(cache, "demo");
  const repo = join(demoDir, "repo");
  await rm(demoDir, { recursive: true, force: true });
  await mkdir(demoDir, { recursive: true });
  const log = createLogger({ name: "demo", level: process.env.APT_OSTREE_LOG_LEVEL ?? "warn" });
  // The fleet's root of trust (docs/trust.md): the image ships its root, publish signs by role, serve holds only the command key.
  const trust = join(demoDir, "trust");
  await initRoot(trust, { rootKeys: 1, thresholds: {}, expires: expiryAfterDays(new Date(), 365) });
  const keys = await trustPublishKeys(trust);
  const token = randomBytes(18).toString("base64url");
  // --auto-accept admits only devices proving the fleet enrollment secret: the disk carries it.
  const enrollmentSecret = randomBytes(32).toString("base64");
  await writeFile(join(demoDir, "enrollment-secret"), `${enrollmentSecret}\n`, { mode: 0o600 });
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const demoStarted = Date.now();

  const step = async (image: string, label: string, scratchDelta: boolean): Promise<[ComposeResult, PublishResult]> => {
    say(`\n== ${label}: compose ${image} for ${MACHINE}`);
    const started = Date.now();
    const composed = await compose({
      recipesDir: DEFAULT_RECIPES_DIR, image, machine: MACHINE, repo, cacheDir: cache, indexMaxAgeSeconds: 3600, trustRoot: join(trust, "root.json"), log,
      progress: createComposeProgress(log),
    });
    say(`   composed version ${composed.version} in ${seconds(started)}: ${composed.commit}`);
    say(`   ${composed.packages} packages, kernel ${composed.kernel}; ${formatBytes(composed.sizes!.unpacked)} unpacked, ${formatBytes(composed.sizes!.compressed)} in the repo`);
    say(`== ${label}: sign, generate static deltas, update the summary, write the channel manifest`);
    const publishStarted = Date.now();
    const published = await publish({ repo, ref: composed.ref, ...keys, channel: "stable", deltaDepth: 3, scratchDelta, expiresInSeconds: 30 * 86400, log });
    say(`   published in ${seconds(publishStarted)}`);
    return [composed, published];
  };

  // A disk-built device never needs the delta from scratch: only release 2 gets one, to show its size.
  const [v1] = await step("appliance-minimal", "Release 1", false);

  say("\n== Server: HTTPS repo, API and dashboard, embedded MQTT broker over TLS (loopback)");
  // The VM reaches the host's loopback at 10.0.2.2: the certificate names it too.
  const tls = await initTlsDir(join(demoDir, "server", "tls"), ["localhost", "127.0.0.1", HOST_FROM_GUEST]);
  const ca = await readFile(tls.ca, "utf8");
  const server = await startServer(
    { repo, data: join(demoDir, "server"), httpPort: HTTP_PORT, mqttPort: MQTT_PORT, mqttWsPort: null, mqttUrl: null, mqttDynsec: false, db: null, brokerRedis: null, repoUrl: null, host: "127.0.0.1", autoAccept: true, enrollmentSecretFile: join(demoDir, "enrollment-secret"), adminToken: token, signingKey: await commandKeyFile(trust), limits: DEFAULT_LIMITS, tls: { dir: tls.dir, create: false } },
    log,
  );
  const base = `https://127.0.0.1:${server.httpPort}`;
  const { Agent, fetch: undiciFetch } = await import("undici");
  const trustingCa = new Agent({ connect: { ca } });
  const api = async (path: string, body?: unknown): Promise<any> => {
    const res = await undiciFetch(`${base}/api/v1/${path}`, { dispatcher: trustingCa, method: body === undefined ? "GET" : "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = (await res.json()) as any;
    if (!res.ok) throw new Error(`${path}: ${json.error?.message ?? res.status}`);
    return json;
  };
  say(`   ${base}/ (MQTT over TLS on port ${server.mqttPort}); CA ${tls.ca}, pinned on the device`);

  say("\n== Device: build a disk from release 1 and boot it in qemu");
  const disk = join(demoDir, "device.img");
  await buildDisk({
    repo, ref: v1.ref, out: disk, sizeBytes: 4 * 1024 ** 3, osname: "debian", workDir: demoDir, log,
    etcFiles: deviceEtcFiles({ server: `https://${HOST_FROM_GUEST}:${server.httpPort}`, mqtt: `mqtts://${HOST_FROM_GUEST}:${server.mqttPort}`, ca, publicKeys: [], deviceId: "demo-vm-1", groups: ["demo"], enrollmentSecret }),
  });
  const vm = new Vm({ disk, serialLog: join(demoDir, "serial.log"), accel: accelFromEnv() });
  const stopAll = async () => {
    await vm.stop();
    await server.close();
  };
  try {
    const bootStarted = Date.now();
    await vm.start();
    say(`   booting (serial console: ${join(demoDir, "serial.log")})`);
    // The VM boots while release 2 composes.
    let enrolledAfter = "";
    const [[v2, published], enrolled] = await Promise.all([
      step("appliance-minimal-next", "Release 2 (adds curl)", true),
      waitFor(10 * MINUTE, async () => {
        const { devices } = await api("devices");
        // Online comes with the MQTT connection; the booted deployment with the first report.
        const found = devices.find((d: any) => d.id === "demo-vm-1" && d.online && d.booted) ?? null;
        if (found) enrolledAfter = seconds(bootStarted);
        return found;
      }),
    ]);
    say(`\n== Device demo-vm-1 enrolled and reported version ${enrolled.booted.version} ${enrolledAfter} after power-on`);

    // The group the device reports is only shown: the operator puts it in the group rollouts select.
    await api("devices/demo-vm-1/groups", { groups: ["demo"] });
    say("== Operator puts demo-vm-1 in group demo");
    say(`== Rollout of version ${v2.version} to group demo`);
    const rolloutStarted = Date.now();
    const { rollout } = await api("rollouts", { ref: v2.ref, select: { groups: ["demo"] }, waves: "100%", waveDelay: "0s", waveTimeout: "30m" });
    let last = "";
    const healthy = await waitFor(15 * MINUTE, async () => {
      const { device } = await api("devices/demo-vm-1");
      if (device.state !== last) say(`   ${seconds(rolloutStarted).padStart(5)}  ${(last = device.state)}`);
      return device.state === "healthy" && device.booted.commit === v2.commit ? device : null;
    });
    const { rollout: done } = await api(`rollouts/${rollout.id}`);
    say(`   device healthy on version ${healthy.booted.version} ${seconds(rolloutStarted)} after the rollout was created; rollout ${done.progress.state}`);

    const from = await resolveRevision(repo, v1.commit);
    const to = await resolveRevision(repo, v2.commit);
    say("\n== Result");
    say(`Repo:      ${repo}`);
    say(`Ref:       ${published.ref}`);
    say(`Signed by: image key ${keyId(keys.imageKeys[0]!.publicKey)} (commit), release key ${keyId(keys.releaseKeys[0]!.publicKey)} (manifest); root of trust ${join(trust, "root.json")}`);
    say(`Manifest:  ${join(repo, published.manifest)}`);
    say("Versions:");
    for (const v of [v1, v2]) say(`  ${v.version.padEnd(3)} ${v.commit}  ${formatBytes(v.sizes!.unpacked)} unpacked, ${formatBytes(v.sizes!.compressed)} compressed`);
    say(`Static deltas to version ${published.version}:`);
    for (const d of published.deltas) say(`  from ${(d.fromVersion ?? "scratch").padEnd(8)} ${formatBytes(d.size).padStart(10)} in ${d.files.length} file(s)`);
    say(`Package changes ${v1.version} -> ${v2.version}:`);
    say(renderPackageDiff(diffPackages(from.info.packages, to.info.packages)).trimEnd().replace(/^/gm, "  "));
    say(`Dashboard: ${base}/  (sign in with the admin token ${token}; the browser must trust ${tls.ca}, or accept the warning)`);
    say(`Whole demo: ${seconds(demoStarted)}`);
    if (keepRunning) {
      say("\nServer and VM keep running; Ctrl-C stops both.");
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
    } else {
      say("(run with --keep-running to keep the server and the VM up and browse the dashboard)");
    }
  } finally {
    await stopAll();
  }
}

async function waitFor<T>(timeoutMs: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`the demo device did not get there within ${Math.round(timeoutMs / MINUTE)} minutes; see the serial console log`);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function seconds(since: number): string {
  return `${Math.round((Date.now() - since) / 1000)} s`;
}

await main().catch((error: unknown) => {
  process.stderr.write(`error: ${(error as Error).message}\n`);
  process.exit(1);
});
