/**
 * `apt-ostree install`, `uninstall` and `override` as processes on a throwaway sysroot booted
 * into a real bookworm base, with packages served over HTTP: requests accumulate in the pending
 * deployment, `status` shows them in rpm-ostree's keys, refusals exit 1 with the reason.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_DEFAULTS, type AgentSettings } from "../../../device/config/settings.ts";
import { initRepo, resolveRef } from "../../../shared/ostree/repo.ts";
import { sysrootRepo } from "../../../device/sysroot/deployments.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { formatPublicKey } from "../../../shared/sign/keys.ts";
import { DEVICE_CLI } from "../../helpers/cli.ts";
import { buildDeb, buildFlatRepo, serveDirectory } from "../../helpers/fake-debs.ts";
import { commitLayeringBase } from "../../helpers/layering-base.ts";
import { createDeviceDisk, OSNAME } from "../../helpers/simulated-bootloader.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let base: string;
let config: string;
let localDeb: string;
let http: { url: string; server: Server };
let sysroot: string;

beforeAll(async () => {
  dir = await makeTempDir("layering-cli");
  const repo = join(dir, "repo");
  await initRepo(repo, "bare");
  const extra = await buildDeb(join(dir, "base-debs"), { name: "fz-extra", version: "1.0", files: { "/usr/share/fz-extra/v": "1\n" } });
  base = await commitLayeringBase(repo, dir, "test/base", "1", [extra]);
  await buildFlatRepo(join(dir, "apt-repo"), [
    { name: "fz-tool", version: "1.0", depends: "fz-lib", files: { "/usr/bin/fz-tool": "#!/bin/sh\necho fz-tool\n" } },
    { name: "fz-lib", version: "1.0", files: { "/usr/lib/fz-lib/data": "lib\n" } },
  ]);
  localDeb = await buildDeb(join(dir, "local"), { name: "fz-local", version: "0.1", files: { "/usr/share/fz-local/here": "yes\n" } });
  http = await serveDirectory(join(dir, "apt-repo"));
  const aptDir = join(dir, "apt-etc");
  await mkdir(join(aptDir, "sources.list.d"), { recursive: true });
  await writeFile(join(aptDir, "sources.list"), `deb [trusted=yes] ${http.url} ./\n`);

  const device = join(dir, "device");
  const disk = await createDeviceDisk(device, repo, "test/base", base);
  sysroot = disk.sysroot;
  await mkdir(join(device, "keys.d"), { recursive: true });
  await writeFile(join(device, "keys.d", "server.pub"), formatPublicKey(generateKeyPair().publicKey));
  const settings: AgentSettings = {
    ...AGENT_DEFAULTS,
    deviceId: "dev-layer",
    server: "http://127.0.0.1:9",
    mqtt: "mqtt://127.0.0.1:9",
    ref: "test/base",
    osname: OSNAME,
    sysroot: disk.sysroot,
    rootDir: disk.rootDir,
    bootIdFile: disk.bootIdFile,
    grubenv: disk.grubenv,
    stateDir: join(device, "state", "agent"),
    keysDir: join(device, "keys.d"),
    rootFile: join(device, "root.json"),
    ostreeKeysFile: "",
    healthDir: join(device, "health.d"),
    socket: join(device, "state", "agent.sock"),
    rebootCommand: ["true"],
    stage: false,
    layeringAptDir: aptDir,
  };
  config = join(device, "agent.yaml");
  await writeFile(config, JSON.stringify(settings));
}, 300_000);

afterAll(async () => {
  http?.server.close();
  if (dir) await removeTree(dir);
});

async function cli(args: string[]) {
  return execa(process.execPath, [DEVICE_CLI, ...args, "--config", config], { reject: false, all: true });
}

async function status(): Promise<any[]> {
  const result = await cli(["status", "--json"]);
  expect(result.exitCode, result.all).toBe(0);
  return JSON.parse(result.stdout).deployments;
}

describe("apt-ostree install, uninstall and override", () => {
  it("installs a package with its dependency in a new deployment on the booted base, shown with rpm-ostree's keys", async () => {
    const result = await cli(["install", "fz-tool"]);
    expect(result.exitCode, result.all).toBe(0);
    expect(result.stdout).toMatch(/^Installing 2 package\(s\):\n  fz-lib-1\.0\.all\n  fz-tool-1\.0\.all\nDeployed [0-9a-f]{12} \(base [0-9a-f]{12}\)\.\nRun "systemctl reboot" to start a reboot$/);
    const [pending, booted] = await status();
    expect(pending).toMatchObject({ "base-checksum": base, base, origin: "test/base", "requested-packages": ["fz-tool"], packages: ["fz-tool"], "requested-local-packages": [], "base-removals": [] });
    expect(booted).toMatchObject({ checksum: base, booted: true, "requested-packages": [], packages: [] });
    expect(booted["base-checksum"]).toBeUndefined();
    const text = (await cli(["status"])).stdout;
    expect(text).toMatch(/BaseCommit: [0-9a-f]{64}\n\s+Commit: [0-9a-f]{64}\n\s+LayeredPackages: fz-tool\n/);
    // The base is kept by a ref of its own, whatever happens to the followed ref.
    expect(await resolveRef(sysrootRepo(sysroot), "apt-ostree/base/0")).toBe(base);
  }, 120_000);

  it("refuses a package already requested or in the base, unless told otherwise", async () => {
    const again = await cli(["install", "fz-tool"]);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(/Package 'fz-tool' is already requested/);
    const idempotent = await cli(["install", "--idempotent", "fz-tool"]);
    expect(idempotent.exitCode, idempotent.all).toBe(0);
    expect(idempotent.stdout).toBe("No change.");
    const inBase = await cli(["install", "fz-extra"]);
    expect(inBase.exitCode).toBe(1);
    expect(inBase.stderr).toMatch(/"fz-extra" is already provided by: fz-extra 1\.0\. Use --allow-inactive to explicitly require it\./);
  }, 60_000);

  it("accumulates a local .deb and an override onto the pending deployment, and --dry-run deploys nothing", async () => {
    const before = (await status())[0].checksum;
    const dry = await cli(["install", "--dry-run", localDeb]);
    expect(dry.exitCode, dry.all).toBe(0);
    expect(dry.stdout).toMatch(/Would install 3 package\(s\):[\s\S]*fz-local-0\.1\.all[\s\S]*Exiting because of '--dry-run' option/);
    expect((await status())[0].checksum).toBe(before);

    expect((await cli(["install", localDeb])).exitCode).toBe(0);
    const removed = await cli(["override", "remove", "fz-extra", "--json"]);
    expect(removed.exitCode, removed.all).toBe(0);
    expect(JSON.parse(removed.stdout)).toMatchObject({ changed: true, outcome: { removedBasePackages: [{ name: "fz-extra", version: "1.0" }] } });
    const [pending] = await status();
    expect(pending).toMatchObject({ "requested-packages": ["fz-tool"], "requested-base-removals": ["fz-extra"], "base-removals": ["fz-extra-1.0.all"], packages: ["fz-local", "fz-tool"] });
    expect(pending["requested-local-packages"]).toEqual([expect.stringMatching(/^[0-9a-f]{64}:fz-local-0\.1\.all$/)]);
  }, 180_000);

  it("goes back to the plain base once every request is dropped", async () => {
    expect((await cli(["uninstall", "fz-tool"])).exitCode).toBe(0);
    const notRequested = await cli(["uninstall", "fz-tool"]);
    expect(notRequested.stderr).toMatch(/Package\/capability 'fz-tool' is not currently requested/);
    expect((await cli(["uninstall", "--all"])).exitCode).toBe(0);
    const reset = await cli(["override", "reset", "--all"]);
    expect(reset.exitCode, reset.all).toBe(0);
    expect(reset.stdout).toMatch(/Deployed the base [0-9a-f]{12} \(nothing layered\)/);
    const [pending] = await status();
    expect(pending.checksum).toBe(base);
    expect(pending["base-checksum"]).toBeUndefined();
  }, 180_000);

  it("fetches the indices with refresh-md, which install --cache-only then uses", async () => {
    const refreshed = await cli(["refresh-md", "--json"]);
    expect(refreshed.exitCode, refreshed.all).toBe(0);
    expect(JSON.parse(refreshed.stdout).fetched).toBeGreaterThan(0);
    const dry = await cli(["install", "--cache-only", "--dry-run", "fz-tool"]);
    expect(dry.exitCode, dry.all).toBe(0);
    expect(dry.stdout).toMatch(/Would install 2 package\(s\)/);
  }, 60_000);

  it("says why usroverlay cannot work on a sysroot that is not booted", async () => {
    const result = await cli(["usroverlay"]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/ostree admin unlock failed.*[Nn]ot currently booted/s);
  });

  it("refuses when the device's configuration forbids layering", async () => {
    const settings = JSON.parse(await readFile(config, "utf8"));
    const forbidding = join(dir, "forbidding.yaml");
    await writeFile(forbidding, JSON.stringify({ ...settings, allowLayering: false }));
    const result = await execa(process.execPath, [DEVICE_CLI, "install", "fz-tool", "--idempotent", "--config", forbidding], { reject: false });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/package layering is forbidden on this device \(allowLayering: false/);
  });

  it("answers --help and usage errors", async () => {
    expect((await cli(["install", "--help"])).stdout).toMatch(/--allow-inactive/);
    expect((await cli(["uninstall"])).exitCode).toBe(2);
    expect((await cli(["override", "reset"])).exitCode).toBe(2);
  });
});

