/** `rollback`, `kargs` and `cleanup`: changes to the deployment list through `ostree admin`. */
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runProgram } from "../../shared/process/run.ts";
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { AptOstreeError, UsageError } from "../../shared/errors.ts";
import { runOstree } from "../../shared/ostree/exec.ts";
import type { AgentSettings } from "../config/settings.ts";
import { applyKargEdits, bootEntryOptions, userKargs } from "../sysroot/kargs.ts";
import { sysrootRepo } from "../sysroot/deployments.ts";
import { deployRetaining } from "../sysroot/deploy.ts";
import { COMMON_OPTIONS, cliSettings, deploymentsOf, viaAgent } from "./context.ts";

async function undeploy(settings: AgentSettings, index: number): Promise<void> {
  await runOstree(["admin", "undeploy", `--sysroot=${settings.sysroot}`, String(index)]);
}

async function reboot(settings: AgentSettings): Promise<void> {
  const result = await runProgram(settings.rebootCommand[0]!, settings.rebootCommand.slice(1), { stdio: "inherit" });
  if (result.exitCode !== 0) throw new AptOstreeError("E_REBOOT", `${settings.rebootCommand.join(" ")} exited ${result.exitCode ?? result.signal}`);
}

export const rollbackCommand = defineCommand({
  name: "rollback",
  description: "Make the rollback deployment the default for the next boot (or drop a pending one).",
  options: { ...COMMON_OPTIONS, reboot: { type: "boolean", short: "r", description: "Reboot into it now" }, json: { type: "boolean", description: "Print {default} as JSON" } },
  async run({ options, io }) {
    const settings = await cliSettings(options);
    const deployments = await deploymentsOf(settings);
    const booted = deployments.findIndex((d) => d.booted);
    if (booted > 0) {
      // A pending deployment sits before the booted one: dropping it makes the booted one the default.
      await undeploy(settings, 0);
    } else {
      const rollback = deployments.find((d) => d.rollback);
      if (!rollback) throw new AptOstreeError("E_NO_ROLLBACK", "there is no rollback deployment");
      // ostree 2022.7 has no set-default: deploy the rollback's commit again (its kernel arguments kept);
      // the old copy then falls out as the second rollback.
      const kargs = userKargs((await bootEntryOptions(settings.sysroot))[deployments.indexOf(rollback)] ?? "");
      await deployRetaining({ sysroot: settings.sysroot, rootDir: settings.rootDir, osname: rollback.osname, revision: rollback.checksum, ...(rollback.origin ? { originRefspec: rollback.origin } : {}), args: ["--karg-none", ...kargs.map((k) => `--karg-append=${k}`)] });
    }
    await viaAgent(settings, { op: "deployments-changed" });
    const now = await deploymentsOf(settings);
    printResult(io, options.json, { default: now[0] ?? null }, `Moving '${now[0]?.checksum.slice(0, 12)}' (${now[0]?.version}) to be first deployment.${options.reboot ? "" : "\nRun \"systemctl reboot\" to start a reboot."}`);
    if (options.reboot) await reboot(settings);
  },
});

export const kargsCommand = defineCommand({
  name: "kargs",
  description: "Show the kernel arguments of the next boot, or change them (a new deployment of the same commit).",
  options: {
    ...COMMON_OPTIONS,
    append: { type: "string", multiple: true, valueName: "KEY=VALUE", description: "Add an argument" },
    delete: { type: "string", multiple: true, valueName: "KEY[=VALUE]", description: "Remove an argument" },
    replace: { type: "string", multiple: true, valueName: "KEY=VALUE", description: "Change an existing argument's value" },
    editor: { type: "boolean", description: "Edit the arguments in $EDITOR" },
    json: { type: "boolean", description: "Print {kargs} as JSON" },
  },
  async run({ options, io }) {
    const settings = await cliSettings(options);
    const deployments = await deploymentsOf(settings);
    const target = deployments[0];
    if (!target) throw new AptOstreeError("E_NO_DEPLOYMENT", `no deployment in ${settings.sysroot}`);
    const current = userKargs((await bootEntryOptions(settings.sysroot))[0] ?? "");
    const edits = { append: options.append ?? [], delete: options.delete ?? [], replace: options.replace ?? [] };
    let next: string[];
    if (options.editor) {
      if (edits.append.length + edits.delete.length + edits.replace.length > 0) throw new UsageError("--editor cannot be combined with --append, --delete or --replace");
      next = await editInEditor(current, io.env.EDITOR ?? io.env.VISUAL ?? "vi");
    } else {
      next = applyKargEdits(current, edits);
    }
    if (next.join(" ") === current.join(" ")) {
      printResult(io, options.json, { kargs: current }, current.join(" "));
      return;
    }
    await deployRetaining({ sysroot: settings.sysroot, rootDir: settings.rootDir, osname: target.osname, revision: target.checksum, ...(target.origin ? { originRefspec: target.origin } : {}), args: ["--karg-none", ...next.map((k) => `--karg-append=${k}`)] });
    printResult(io, options.json, { kargs: next }, `Kernel arguments updated; they take effect on the next boot:\n${next.join(" ")}`);
  },
});

async function editInEditor(current: string[], editor: string): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), "apt-ostree-kargs-"));
  const file = join(dir, "kargs");
  try {
    await writeFile(file, `${current.join(" ")}\n# Kernel arguments for the next boot, on the first line. Lines starting with # are ignored.\n`);
    const result = spawnSync("sh", ["-c", `${editor} "$1"`, "editor", file], { stdio: "inherit" });
    if (result.status !== 0) throw new AptOstreeError("E_EDITOR", `the editor (${editor}) exited with ${result.status ?? result.signal}; nothing changed`);
    const text = (await readFile(file, "utf8")).split("\n").filter((line) => !line.startsWith("#")).join(" ");
    return userKargs(text);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export const cleanupCommand = defineCommand({
  name: "cleanup",
  description: "Remove the pending or rollback deployment, unused objects, or cached downloads.",
  options: {
    ...COMMON_OPTIONS,
    pending: { type: "boolean", short: "p", description: "Remove the pending (or staged) deployment" },
    rollback: { type: "boolean", short: "r", description: "Remove the rollback deployment" },
    base: { type: "boolean", short: "b", description: "Remove unused objects and boot files (ostree admin cleanup)" },
    repomd: { type: "boolean", short: "m", description: "Remove downloaded delta files and prune unreferenced objects" },
  },
  async run({ options, io }) {
    const settings = await cliSettings(options);
    if (!options.pending && !options.rollback && !options.base && !options.repomd) throw new UsageError("say what to clean up: -p, -r, -b or -m");
    const deployments = await deploymentsOf(settings);
    const doomed = [
      ...(options.pending ? deployments.flatMap((d, i) => (d.pending || d.staged ? [i] : [])) : []),
      ...(options.rollback ? deployments.flatMap((d, i) => (d.rollback ? [i] : [])) : []),
    ].sort((a, b) => b - a);
    for (const index of doomed) await undeploy(settings, index);
    if (doomed.length > 0) await viaAgent(settings, { op: "deployments-changed" });
    if (options.base) await runOstree(["admin", "cleanup", `--sysroot=${settings.sysroot}`]);
    if (options.repomd) {
      await rm(join(settings.stateDir, "downloads"), { recursive: true, force: true });
      await runOstree(["prune", `--repo=${sysrootRepo(settings.sysroot)}`, "--refs-only"]);
    }
    io.stdout.write(`${doomed.length > 0 ? `Removed ${doomed.length} deployment(s).` : "No deployments removed."}\n`);
  },
});
