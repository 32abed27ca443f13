/**
 * The agent's side of the boot counter (device/health/boot-counter.ts) with the real grub-editenv:
 * both blocks GRUB reads (08_apt-ostree-counter) are replaced whole, the copy first, and a block a
 * power cut truncated or garbled is written anew rather than refused.
 */
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { counterCopyPath, grubenvBootCounter } from "../../../device/health/boot-counter.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let grubenv: string;
const list = async (file: string) => (await execa("grub-editenv", [file, "list"])).stdout;

beforeEach(async () => {
  dir = await makeTempDir("boot-counter");
  grubenv = join(dir, "grub", "grubenv");
});
afterEach(() => removeTree(dir));

describe("the boot counter in two environment blocks", () => {
  it("arms and blesses both blocks, keeping grubenv's other variables", async () => {
    const counter = grubenvBootCounter(grubenv);
    await counter.arm(3);
    expect(await list(grubenv)).toBe("boot_counter=3\nboot_success=0");
    expect(await list(counterCopyPath(grubenv))).toBe("boot_counter=3\nboot_success=0");
    await execa("grub-editenv", [grubenv, "set", "saved_entry=2"]);
    await counter.bless();
    expect(await list(grubenv)).toBe("boot_success=1\nsaved_entry=2");
    expect(await list(counterCopyPath(grubenv))).toBe("boot_success=1");
    expect((await readdir(join(dir, "grub"))).sort()).toEqual(["apt-ostree.env", "grubenv"]);
  });

  it("arms over a truncated grubenv and a garbled copy, where grub-editenv alone refuses", async () => {
    const counter = grubenvBootCounter(grubenv);
    await counter.bless();
    await writeFile(grubenv, "");
    await writeFile(counterCopyPath(grubenv), "not an environment block");
    expect((await execa("grub-editenv", [grubenv, "set", "boot_counter=2"], { reject: false })).stderr).toMatch(/invalid environment block/);
    await counter.arm(2);
    expect(await list(grubenv)).toBe("boot_counter=2\nboot_success=0");
    expect(await list(counterCopyPath(grubenv))).toBe("boot_counter=2\nboot_success=0");
  });
});
