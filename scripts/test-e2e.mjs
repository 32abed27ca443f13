#!/usr/bin/env node
// `npm run test:e2e [-- --arch amd64|arm64] [vitest options]`: the qemu end-to-end test
// (test/e2e) for one architecture. CI runs amd64; arm64 runs under full emulation (about half an hour here).
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
if (args.includes("--help") || args.includes("-h")) {
  process.stdout.write("Usage: npm run test:e2e [-- --arch amd64|arm64] [vitest options]\n\nBoots a VM built from a real compose and runs the update, failed-check and unbootable-release scenarios.\n  --arch ARCH   amd64 (default; qemu-system-x86_64, BIOS) or arm64 (qemu-system-aarch64 -M virt, UEFI)\n");
  process.exit(0);
}
let arch = process.env.APT_OSTREE_E2E_ARCH ?? "amd64";
const vitestArgs = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--arch") arch = args[++i];
  else if (args[i].startsWith("--arch=")) arch = args[i].slice("--arch=".length);
  else vitestArgs.push(args[i]);
}
if (arch !== "amd64" && arch !== "arm64") {
  process.stderr.write(`error: --arch must be amd64 or arm64, not '${arch ?? ""}'\n`);
  process.exit(2);
}
const root = fileURLToPath(new URL("..", import.meta.url));
const result = spawnSync("npx", ["vitest", "run", "--config", "vitest.e2e.config.ts", ...vitestArgs], { cwd: root, stdio: "inherit", env: { ...process.env, APT_OSTREE_E2E_ARCH: arch } });
process.exit(result.status ?? 1);
