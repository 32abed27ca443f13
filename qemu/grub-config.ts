/**
 * The first grub.cfg of a fresh disk, rendered on the host from ostree's boot entries: ostree's
 * own grub2 backend needs a booted system (grub-probe), so the device regenerates it from its
 * first deploy on. Same shape as the device's: serial console, the boot counter snippet, then
 * one menu entry per deployment, newest first (entry 1 is the fallback).
 */
import type { BootEntry } from "./disk.ts";

export interface GrubConfigOptions {
  /** GRUB drives the serial port itself (BIOS). Under UEFI the firmware's console already reaches it. */
  serialConsole: boolean;
}

export function renderGrubConfig(entries: BootEntry[], counterSnippet: string, options: GrubConfigOptions): string {
  const quote = (text: string) => `'${text.replace(/'/g, "'\\''")}'`;
  const terminal = options.serialConsole ? ["serial --unit=0 --speed=115200", "terminal_input serial console", "terminal_output serial console"] : [];
  const lines = [
    "# Written by apt-ostree's disk builder; ostree's grub2 backend replaces it on the first deploy.",
    ...terminal,
    "set timeout=1",
    "set default=0",
    counterSnippet.trimEnd(),
  ];
  for (const entry of entries) {
    lines.push(`menuentry ${quote(entry.title)} {`, "  insmod gzio", "  insmod part_gpt", "  insmod ext2", `  linux ${entry.linux} ${entry.options}`);
    if (entry.initrd) lines.push(`  initrd ${entry.initrd}`);
    lines.push("}");
  }
  return `${lines.filter((line) => line !== "").join("\n")}\n`;
}
