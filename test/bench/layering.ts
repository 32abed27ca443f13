/**
 * `npm run bench -- layering` (issue 22): `apt-ostree install` of a small Debian package with its
 * dependencies on a throwaway sysroot booted into a real bookworm base, command to deployed,
 * against `apt-get install` of the same package into a plain chroot of the same base (the floor:
 * what APT and dpkg cost without OSTree); then the re-apply of a three-package layer onto a new
 * base (what an update adds on a layered device). Packages come from Debian's mirror; each side
 * runs once unmeasured first so both measure with the .debs already downloaded.
 */
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { AGENT_DEFAULTS, type AgentSettings } from "../../device/config/settings.ts";
import { carryLayer } from "../../device/layering/carry.ts";
import { emptyLayerRequest } from "../../shared/image/layer-metadata.ts";
import { silentLogger } from "../../shared/log.ts";
import { initRepo } from "../../shared/ostree/repo.ts";
import { generateKeyPair } from "../../shared/sign/ed25519.ts";
import { formatPublicKey } from "../../shared/sign/keys.ts";
import { DEVICE_CLI } from "../helpers/cli.ts";
import { commitLayeringBase, ensureLayeringBaseRoot } from "../helpers/layering-base.ts";
import { createDeviceDisk, OSNAME } from "../helpers/simulated-bootloader.ts";
import { makeTempDir, removeTree } from "../helpers/tmp.ts";
import { percentile } from "./stats.ts";
import { timed } from "./timed.ts";

const PACKAGE = process.env.APT_OSTREE_BENCH_LAYER_PACKAGE ?? "jq";
const THREE = (process.env.APT_OSTREE_BENCH_LAYER_THREE ?? "jq,tree,less").split(",");
const RUNS = 3;
const SOURCES = "deb http://deb.debian.org/debian bookworm main\n";

export async function benchLayering(say: (line?: string) => void, progress: (line: string) => void): Promise<void> {
  const dir = await makeTempDir("bench-layering");
  try {
    const aptEtc = join(dir, "apt-etc");
    await mkdir(join(aptEtc, "sources.list.d"), { recursive: true });
    await mkdir(join(aptEtc, "trusted.gpg.d"), { recursive: true });
    await writeFile(join(aptEtc, "sources.list"), SOURCES);
    await copyFile("/usr/share/keyrings/debian-archive-bookworm-stable.gpg", join(aptEtc, "trusted.gpg.d", "bookworm.gpg"));

    progress("layering: the plain chroot (apt-get install)");
    const root = await ensureLayeringBaseRoot();
    const aptCache = join(dir, "chroot-cache");
    await mkdir(join(aptCache, "archives", "partial"), { recursive: true });
    const plain: number[] = [];
    for (let i = 0; i <= RUNS; i++) {
      const copy = join(dir, `plain-${i}`);
      await execa("cp", ["-a", root, copy]);
      await writeFile(join(copy, "etc/apt/sources.list"), SOURCES);
      await execa("chroot", [copy, "apt-get", "update", "-q"], { env: { LC_ALL: "C" } });
      const script = `mount --bind ${aptCache}/archives ${copy}/var/cache/apt/archives && mount -t proc proc ${copy}/proc && exec chroot ${copy} apt-get install -y -q --no-install-recommends ${PACKAGE}`;
      const [, seconds] = await timed(() => execa("unshare", ["--mount", "--propagation", "private", "sh", "-c", script], { env: { DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C", PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } }));
      if (i > 0) plain.push(seconds);
      await removeTree(copy);
    }

    progress("layering: apt-ostree install on a sysroot");
    const repo = join(dir, "repo");
    await initRepo(repo, "bare");
    const base = await commitLayeringBase(repo, dir, "bench/base", "1");
    const device = join(dir, "device");
    const disk = await createDeviceDisk(device, repo, "bench/base", base);
    await mkdir(join(device, "keys.d"), { recursive: true });
    await writeFile(join(device, "keys.d", "server.pub"), formatPublicKey(generateKeyPair().publicKey));
    const settings: AgentSettings = {
      ...AGENT_DEFAULTS, deviceId: "bench", server: "http://127.0.0.1:9", mqtt: "mqtt://127.0.0.1:9", ref: "bench/base", osname: OSNAME,
      sysroot: disk.sysroot, rootDir: disk.rootDir, bootIdFile: disk.bootIdFile, grubenv: disk.grubenv, stateDir: join(device, "state"),
      keysDir: join(device, "keys.d"), rootFile: join(device, "root.json"), ostreeKeysFile: "", healthDir: join(device, "health.d"),
      socket: join(device, "agent.sock"), stage: false, layeringAptDir: aptEtc,
    };
    const config = join(device, "agent.yaml");
    await writeFile(config, JSON.stringify(settings));
    const cli = (args: string[]) => execa(process.execPath, [DEVICE_CLI, ...args, "--config", config]);
    await cli(["refresh-md"]);
    const ours: number[] = [];
    for (let i = 0; i <= RUNS; i++) {
      const [, seconds] = await timed(() => cli(["install", "--cache-only", PACKAGE]));
      if (i > 0) ours.push(seconds);
      await cli(["uninstall", "--all"]);
    }

    progress(`layering: re-apply ${THREE.join(", ")} onto a new base`);
    const base2 = await commitLayeringBase(repo, dir, "bench/base", "2");
    const request = { ...emptyLayerRequest(), packages: [...THREE].sort() };
    const stateDir = join(settings.stateDir, "layering");
    await carryLayer({ repo, base: base2, request, aptEtc, stateDir, log: silentLogger() });
    const reapply: number[] = [];
    for (let i = 0; i < RUNS; i++) reapply.push((await timed(() => carryLayer({ repo, base: base2, request, aptEtc, stateDir, log: silentLogger() })))[1]);

    const median = (values: number[]) => percentile([...values].sort((a, b) => a - b), 50);
    const s = (n: number) => `${n.toFixed(2)} s`;
    say("### Package layering");
    say();
    say(`A throwaway sysroot booted into a real bookworm base (the \`apt\` variant), packages from Debian's mirror with the .debs already downloaded; median of ${RUNS} runs each, after one unmeasured.`);
    say();
    say("| what | median | runs |");
    say("| --- | --- | --- |");
    say(`| floor: \`apt-get install ${PACKAGE}\` into a plain chroot of the base | ${s(median(plain))} | ${plain.map(s).join(", ")} |`);
    say(`| \`apt-ostree install --cache-only ${PACKAGE}\`, command to deployed | ${s(median(ours))} (${(median(ours) / median(plain)).toFixed(1)}x) | ${ours.map(s).join(", ")} |`);
    say(`| re-apply ${THREE.join(", ")} onto a new base (checkout, install, commit) | ${s(median(reapply))} | ${reapply.map(s).join(", ")} |`);
    say();
  } finally {
    await removeTree(dir);
  }
}
