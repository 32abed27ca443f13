/**
 * Staging starts ostree's finalize unit and waits for it, so a reboot right after the staging
 * cannot overtake the .path unit and drop the update (device/sysroot/deploy.ts). `ostree` and
 * `systemctl` are stand-ins on PATH that log their arguments: staging for real needs a booted
 * OSTree system, which the qemu end-to-end test provides.
 */
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { deployRetaining, FINALIZE_UNIT } from "../../../device/sysroot/deploy.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
const savedPath = process.env.PATH;

beforeEach(async () => {
  dir = await makeTempDir("deploy-stage");
  await mkdir(join(dir, "bin"));
  for (const program of ["ostree", "systemctl"]) {
    const fail = program === "systemctl" ? `[ -e ${join(dir, "fail")} ] && { echo "Unit ${FINALIZE_UNIT} not found." >&2; exit 5; }\n` : "";
    await writeFile(join(dir, "bin", program), `#!/bin/sh\necho "${program} $*" >> ${join(dir, "calls.log")}\n${fail}exit 0\n`);
    await chmod(join(dir, "bin", program), 0o755);
  }
  process.env.PATH = `${join(dir, "bin")}:${savedPath}`;
});
afterEach(async () => {
  process.env.PATH = savedPath;
  await removeTree(dir);
});

const calls = async () => (await readFile(join(dir, "calls.log"), "utf8")).trim().split("\n");
const stage = () => deployRetaining({ sysroot: "/sysroot", rootDir: "/", osname: "debian", revision: "debian/ref", stage: true });

describe("staging a deployment", () => {
  it("starts the finalize unit after `ostree admin deploy --stage`", async () => {
    await stage();
    expect(await calls()).toEqual(["ostree admin deploy --sysroot=/sysroot --os=debian --stage debian/ref", `systemctl start ${FINALIZE_UNIT}`]);
  });

  it("fails, saying why, when the finalize unit cannot start", async () => {
    await writeFile(join(dir, "fail"), "");
    await expect(stage()).rejects.toMatchObject({ code: "E_FINALIZE_UNIT", message: expect.stringContaining(`Unit ${FINALIZE_UNIT} not found.`) });
  });

  it("does not touch systemd for a plain deploy", async () => {
    await deployRetaining({ sysroot: "/sysroot", rootDir: "/", osname: "debian", revision: "debian/ref", before: [] });
    expect((await calls()).some((line) => line.startsWith("systemctl"))).toBe(false);
  });
});
