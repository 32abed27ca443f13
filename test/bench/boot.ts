/**
 * `npm run bench -- boot`: the real-boot figures (docs/BENCHMARKS.md, "Real boot in qemu"). Runs
 * the qemu end-to-end scenario (test/e2e/boot.test.ts: one compose, a VM, five releases) for
 * APT_OSTREE_BENCH_ARCH (amd64 by default, or arm64), then prints what it measured on the way:
 * power-on to the first report, reboot to healthy, rollout to healthy or rolled back, and the
 * bytes each update step downloaded.
 */
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

const kib = (bytes: number | undefined) => (bytes === undefined ? "n/a" : `${(bytes / 1024).toFixed(1)} KiB`);
const secs = (value: number | undefined) => (value === undefined ? "n/a" : `${Math.round(value)} s`);

export async function benchBoot(say: (line?: string) => void, arch = process.env.APT_OSTREE_BENCH_ARCH ?? "amd64"): Promise<void> {
  const started = Date.now();
  const run = spawnSync(process.execPath, ["scripts/test-e2e.mjs", "--arch", arch], { cwd: ROOT, stdio: ["ignore", process.stderr, process.stderr] });
  if (run.status !== 0) throw new Error(`the e2e scenario failed (exit ${run.status}); see its output above`);
  const suffix = arch === "amd64" ? "" : `-${arch}`;
  const t = JSON.parse(await readFile(new URL(`../artifacts/e2e-timings${suffix}.json`, import.meta.url), "utf8")) as Record<string, number>;
  say(`### Real boot in qemu (${arch}, TCG)`);
  say();
  say("| step | time | downloaded |");
  say("|---|---|---|");
  say(`| VM power-on to the first report (v1) | ${secs(t.bootToOnlineSeconds)} | |`);
  say(`| v2: \`rollout create\` to healthy | ${secs(t.v2RolloutToHealthySeconds)} | ${kib(t.v2DownloadBytes)} |`);
  say(`| v2: rebooting report to healthy report (boot to healthy) | ${secs(t.v2RebootToHealthySeconds)} | |`);
  say(`| v3 (failing check, 2 tries): rollout to rolled back | ${secs(t.v3RolloutToRolledBackSeconds)} | ${kib(t.v3DownloadBytes)} |`);
  say(`| v4 (kernel panic, 2 tries): rollout to rolled back | ${secs(t.v4RolloutToRolledBackSeconds)} | ${kib(t.v4DownloadBytes)} |`);
  say(`| v5 (hang, watchdog reset, 2 tries): rollout to rolled back | ${secs(t.v5RolloutToRolledBackSeconds)} | ${kib(t.v5DownloadBytes)} |`);
  say(`| whole scenario, compose included | ${secs(t.wholeRunSeconds ?? (Date.now() - started) / 1000)} | |`);
  say();
}
