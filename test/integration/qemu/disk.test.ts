import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { publish } from "../../../server/publish/publish.ts";
import { buildDisk } from "../../../qemu/disk.ts";
import { ensureGrubArm64Efi } from "../../helpers/debian-grub.ts";
import { commitSyntheticImage, initServerRepo } from "../../helpers/synthetic-image.ts";
import { silentLogger } from "../../../shared/log.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

const REF = "debian/bookworm/test/disk";
const COUNTER = new URL("../../../yocto-like-recipes/files/grub/08_apt-ostree-counter", import.meta.url);
const SECTOR = 512;
/** The host's GRUB for BIOS (scripts/setup.sh installs grub-pc-bin): a composed image carries the same files. */
const HOST_GRUB_PC = "/usr/lib/grub/i386-pc";
let dir: string;
let repo: string;
let loopsBefore: string;

async function filesUnder(from: string, to: string): Promise<Record<string, Buffer>> {
  const files: Record<string, Buffer> = {};
  for (const name of await readdir(from)) {
    const info = await stat(join(from, name));
    if (info.isFile()) files[`${to}/${name}`] = await readFile(join(from, name));
  }
  return files;
}

const loops = async () => (await execa("losetup", ["-a"])).stdout;
const mounts = async () => (await readFile("/proc/self/mounts", "utf8")).split("\n").filter((line) => line.includes(dir)).join("\n");

/** Reads a file from an ext4 partition inside the image without mounting it. */
async function readFromPartition(image: string, startSector: number, path: string): Promise<string> {
  const result = await execa("debugfs", ["-R", `cat ${path}`, `${image}?offset=${startSector * SECTOR}`], { stderr: "ignore" });
  return result.stdout;
}

async function partitions(image: string): Promise<Array<{ number: number; start: number; name: string; code: string }>> {
  const { stdout } = await execa("sgdisk", ["-p", image]);
  return stdout.split("\n").map((line) => /^\s+(\d+)\s+(\d+)\s+\d+\s+[\d.]+ \S+\s+(\S+)\s+(\S+)/.exec(line)).filter((m) => m !== null)
    .map((m) => ({ number: Number(m![1]), start: Number(m![2]), code: m![3]!, name: m![4]! }));
}

beforeAll(async () => {
  dir = await makeTempDir("disk");
  const key = generateKeyPair();
  repo = await initServerRepo(dir, key);
  const grubFiles = await filesUnder(HOST_GRUB_PC, "usr/lib/grub/i386-pc");
  await commitSyntheticImage(repo, REF, dir, { version: "1", sequence: 1, files: { "usr/etc/grub.d/08_apt-ostree-counter": await readFile(COUNTER, "utf8"), ...grubFiles } });
  await publish({ repo, ref: REF, key, channel: "stable", deltaDepth: 0, scratchDelta: false, expiresInSeconds: 3600, log: silentLogger() });
  loopsBefore = await loops();
});
afterAll(async () => removeTree(dir));

describe("image build (qemu/disk.ts)", () => {
  it("writes a GPT disk with BIOS GRUB, a grub.cfg from ostree's entries with the boot counter, and the device's /etc files", async () => {
    const out = join(dir, "disk.img");
    const built = await buildDisk({ repo, ref: REF, out, sizeBytes: 1024 ** 3, osname: "debian", etcFiles: { "apt-ostree/agent.yaml": "bootTries: 2\n" }, workDir: dir, log: silentLogger() });
    expect(built.version).toBe("1");
    expect(built.kernelArgs.slice(0, 2)).toEqual(["root=LABEL=root", "rw"]);

    const parts = await partitions(out);
    expect(parts.map((p) => [p.number, p.code, p.name])).toEqual([[1, "EF02", "bios-boot"], [2, "8300", "boot"], [3, "8300", "root"]]);
    const disk = await readFile(out);
    expect(disk.readUInt16LE(510)).toBe(0xaa55);
    // boot.img points at core.img in the BIOS-boot partition; core.img's blocklist at the rest of it.
    expect(Number(disk.readBigUInt64LE(0x5c))).toBe(parts[0]!.start);
    const core = parts[0]!.start * SECTOR;
    expect(Number(disk.readBigUInt64LE(core + SECTOR - 12))).toBe(parts[0]!.start + 1);
    expect(disk.readUInt16LE(core + SECTOR - 4)).toBeGreaterThan(10);

    const boot = parts[1]!.start;
    const grubCfg = await readFromPartition(out, boot, "/loader/grub.cfg");
    expect(grubCfg).toContain("### apt-ostree boot counter ###");
    expect(grubCfg).toMatch(/menuentry '[^']*' \{\n[^}]*linux \/ostree\/debian-[0-9a-f]+\/vmlinuz-6\.1\.0-test-amd64 root=LABEL=root rw ostree=\/ostree\/boot\.\d\/debian\/[0-9a-f]+\/0/);
    expect(await readFromPartition(out, boot, "/grub/grubenv")).toContain("# GRUB Environment Block");
    expect(await readFromPartition(out, boot, "/grub/apt-ostree.env")).toContain("# GRUB Environment Block");
    // GRUB replays no journal: /boot has none, so what ostree fsyncs there is what GRUB reads after a power cut.
    const features = async (sector: number) => (await execa("debugfs", ["-R", "features", `${out}?offset=${sector * SECTOR}`], { stderr: "ignore" })).stdout;
    expect(await features(boot)).not.toContain("has_journal");
    expect(await features(parts[2]!.start)).toContain("has_journal");
    const link = await execa("debugfs", ["-R", "stat /grub/grub.cfg", `${out}?offset=${boot * SECTOR}`], { stderr: "ignore" });
    expect(link.stdout).toContain('Fast link dest: "../loader/grub.cfg"');
    expect((await readFromPartition(out, boot, "/grub/i386-pc/normal.mod")).length).toBeGreaterThan(0);

    const root = parts[2]!.start;
    const repoConfig = await readFromPartition(out, root, "/ostree/repo/config");
    expect(repoConfig).toMatch(/bootloader=grub2/);
    const deployments = await execa("debugfs", ["-R", "ls -p /ostree/deploy/debian/deploy", `${out}?offset=${root * SECTOR}`], { stderr: "ignore" });
    const deployment = /\/([0-9a-f]{64}\.0)\//.exec(deployments.stdout)![1]!;
    expect(deployment.startsWith(built.commit)).toBe(true);
    expect(await readFromPartition(out, root, `/ostree/deploy/debian/deploy/${deployment}/etc/apt-ostree/agent.yaml`)).toBe("bootTries: 2");

    expect(await loops()).toBe(loopsBefore);
    expect(await mounts()).toBe("");
  }, 120_000);

  it("writes an arm64 disk with an EFI system partition holding GRUB's removable-media loader, everything else on /boot", async () => {
    const ref = "debian/bookworm/test/disk-arm64";
    const counter = await readFile(COUNTER, "utf8");
    await commitSyntheticImage(repo, ref, join(dir, "arm64"), { version: "1", sequence: 1, architecture: "arm64", files: { "usr/etc/grub.d/08_apt-ostree-counter": counter, ...(await filesUnder(await ensureGrubArm64Efi(), "usr/lib/grub/arm64-efi")) } });
    const out = join(dir, "disk-arm64.img");
    const built = await buildDisk({ repo, ref, out, sizeBytes: 1024 ** 3, osname: "debian", etcFiles: {}, workDir: dir, log: silentLogger() });
    expect(built.architecture).toBe("arm64");

    const parts = await partitions(out);
    expect(parts.map((p) => [p.number, p.code, p.name])).toEqual([[1, "EF00", "efi"], [2, "8300", "boot"], [3, "8300", "root"]]);
    const esp = `${out}@@${parts[0]!.start * SECTOR}`;
    const listing = await execa("mdir", ["-i", esp, "-b", "::/EFI/BOOT"], { env: { MTOOLS_SKIP_CHECK: "1" } });
    expect(listing.stdout.trim()).toBe("::/EFI/BOOT/BOOTAA64.EFI");
    const loader = Buffer.from((await execa("mtype", ["-i", esp, "::/EFI/BOOT/BOOTAA64.EFI"], { encoding: "buffer", env: { MTOOLS_SKIP_CHECK: "1" } })).stdout);
    // A PE image for arm64 (machine 0xaa64) whose embedded prefix names /boot.
    expect(loader.subarray(0, 2).toString()).toBe("MZ");
    expect(loader.readUInt16LE(loader.readUInt32LE(0x3c) + 4)).toBe(0xaa64);
    expect(loader.includes(Buffer.from("(hd0,gpt2)/grub"))).toBe(true);

    const boot = parts[1]!.start;
    const grubCfg = await readFromPartition(out, boot, "/loader/grub.cfg");
    expect(grubCfg).toContain("### apt-ostree boot counter ###");
    expect(grubCfg).not.toContain("serial");
    expect((await readFromPartition(out, boot, "/grub/arm64-efi/normal.mod")).length).toBeGreaterThan(0);
    expect(await readFromPartition(out, boot, "/grub/grubenv")).toContain("# GRUB Environment Block");
    expect(await loops()).toBe(loopsBefore);
    expect(await mounts()).toBe("");
  }, 300_000);

  it("fails half-way without leaving a loop device, a mount or a partial image", async () => {
    const out = join(dir, "broken.img");
    // A deployment /etc file that cannot be written: fails after partitioning, mounting and deploying.
    await expect(buildDisk({ repo, ref: REF, out, sizeBytes: 1024 ** 3, osname: "debian", etcFiles: { ".": "not a file" }, workDir: dir, log: silentLogger() })).rejects.toThrow(/EISDIR/);
    expect(await loops()).toBe(loopsBefore);
    expect(await mounts()).toBe("");
    expect(await stat(out).catch(() => null)).toBeNull();
    expect(await stat(`${out}.partial`).catch(() => null)).toBeNull();
  }, 120_000);

  it("names the missing package when the image has no GRUB for its firmware", async () => {
    const bare = "debian/bookworm/test/no-grub";
    await commitSyntheticImage(repo, bare, join(dir, "no-grub"), { version: "1", sequence: 1 });
    const out = join(dir, "no-grub.img");
    await expect(buildDisk({ repo, ref: bare, out, sizeBytes: 1024 ** 3, osname: "debian", etcFiles: {}, workDir: dir, log: silentLogger() })).rejects.toThrow("the image has no GRUB for i386-pc (/usr/lib/grub/i386-pc is missing): add the machine's GRUB package to bootloader-packages");
    expect(await loops()).toBe(loopsBefore);
    expect(await stat(out).catch(() => null)).toBeNull();
  }, 120_000);

  it("refuses a ref the repo does not have, before touching anything", async () => {
    await expect(buildDisk({ repo, ref: "no/such/ref", out: join(dir, "none.img"), sizeBytes: 1024 ** 3, osname: "debian", etcFiles: {}, workDir: dir, log: silentLogger() })).rejects.toThrow("has no ref 'no/such/ref': compose and publish it first");
    expect(await stat(join(dir, "none.img.partial")).catch(() => null)).toBeNull();
  });
});
