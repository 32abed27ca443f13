import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readBootEntries } from "../../../qemu/disk.ts";
import { renderGrubConfig } from "../../../qemu/grub-config.ts";
import { parseSize } from "../../../server/cli/image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
beforeEach(async () => {
  dir = await makeTempDir("grub-config");
});
afterEach(async () => removeTree(dir));

const entry = (version: number, hash: string) =>
  `title Debian GNU/Linux 12 (bookworm) ${version} (ostree:${2 - version})\nversion ${version}\noptions root=LABEL=root rw ostree=/ostree/boot.1/debian/${hash}/0\nlinux /ostree/debian-${hash}/vmlinuz-6.1.0\ninitrd /ostree/debian-${hash}/initramfs-6.1.0.img\n`;

describe("the first grub.cfg", () => {
  it("lists ostree's entries newest first (entry 1 is the fallback) after the counter snippet", async () => {
    await mkdir(join(dir, "entries"));
    await writeFile(join(dir, "entries/ostree-1-debian.conf"), entry(1, "aaa"));
    await writeFile(join(dir, "entries/ostree-2-debian.conf"), entry(2, "bbb"));
    const entries = await readBootEntries(join(dir, "entries"));
    expect(entries.map((e) => e.version)).toEqual([2, 1]);
    const cfg = renderGrubConfig(entries, "### counter ###\nset x=1\n", { serialConsole: true });
    expect(cfg.indexOf("### counter ###")).toBeLessThan(cfg.indexOf("menuentry"));
    expect(cfg.indexOf("debian-bbb")).toBeLessThan(cfg.indexOf("debian-aaa"));
    expect(cfg).toContain("  linux /ostree/debian-bbb/vmlinuz-6.1.0 root=LABEL=root rw ostree=/ostree/boot.1/debian/bbb/0\n  initrd /ostree/debian-bbb/initramfs-6.1.0.img\n}");
    expect(cfg).toContain("menuentry 'Debian GNU/Linux 12 (bookworm) 2 (ostree:0)' {");
    expect(cfg).toContain("terminal_output serial console\n");
  });

  it("leaves the console to the firmware under UEFI", () => {
    const cfg = renderGrubConfig([{ title: "t", version: 1, linux: "/k", initrd: null, options: "" }], "", { serialConsole: false });
    expect(cfg).not.toContain("serial");
    expect(cfg).toContain("menuentry 't' {");
  });

  it("quotes titles for GRUB and refuses an entry without a kernel", async () => {
    expect(renderGrubConfig([{ title: "it's", version: 1, linux: "/k", initrd: null, options: "" }], "", { serialConsole: true })).toContain(`menuentry 'it'\\''s' {`);
    await mkdir(join(dir, "bad"));
    await writeFile(join(dir, "bad/ostree-1-debian.conf"), "title x\nversion 1\n");
    await expect(readBootEntries(join(dir, "bad"))).rejects.toThrow("boot entry ostree-1-debian.conf has no 'linux' line");
  });
});

describe("image build --size", () => {
  it.each([["4G", 4 * 1024 ** 3], ["2048M", 2048 * 1024 ** 2], ["512k", 512 * 1024], ["1000", 1000]])("reads %s", (text, bytes) => {
    expect(parseSize(text, "size")).toBe(bytes);
  });
  it("names a malformed size", () => {
    expect(() => parseSize("4GB", "size")).toThrow("--size: '4GB' is not a size (e.g. 4G, 2048M)");
  });
});
