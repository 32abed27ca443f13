/** `install`, `uninstall` and `override remove|replace|reset`: package layering in rpm-ostree's words (docs/layering.md). */
import { resolve } from "node:path";
import { defineCommand, printResult, type CommandIO } from "../../shared/cli/command.ts";
import { UsageError } from "../../shared/errors.ts";
import { layeringDirs, layeringServerSource, type LayerOpRequest, type LayerOpResult } from "../ops/layer.ts";
import { refreshIndices } from "../layering/refresh.ts";
import { runOstree } from "../../shared/ostree/exec.ts";
import { COMMON_OPTIONS, cliSettings, viaAgent, type CommonOptions } from "./context.ts";

const LAYER_OPTIONS = {
  ...COMMON_OPTIONS,
  json: { type: "boolean", description: "Print {changed, base, request, deployed, outcome, added, rebooting} as JSON" },
  "dry-run": { type: "boolean", short: "n", description: "Resolve and build, but deploy nothing" },
  reboot: { type: "boolean", short: "r", description: "Reboot into the new deployment (the boot counter armed, so a failed boot falls back)" },
  "cache-only": { type: "boolean", short: "C", description: "Use the package indices already fetched; do not download new ones" },
  assumeyes: { type: "boolean", short: "y", description: "Do not ask (apt-ostree never asks; accepted for rpm-ostree's scripts)" },
} as const;

type LayerCliOptions = CommonOptions & { json?: boolean; "dry-run"?: boolean; reboot?: boolean; "cache-only"?: boolean };

function render(result: LayerOpResult & { rebooting?: boolean }, dryRun: boolean): string {
  if (!result.changed) return "No change.";
  const lines: string[] = [];
  if (result.added.length > 0) lines.push(`${dryRun ? "Would install" : "Installing"} ${result.added.length} package(s):`, ...result.added.map((p) => `  ${p.name}-${p.version}.${p.architecture}`));
  const removed = result.outcome?.removedBasePackages ?? [];
  if (removed.length > 0) lines.push(`${dryRun ? "Would remove" : "Removing"} ${removed.length} base package(s):`, ...removed.map((p) => `  ${p.name}-${p.version}.${p.architecture}`));
  if (dryRun) lines.push("Exiting because of '--dry-run' option");
  else if (result.deployed) {
    lines.push(result.deployed === result.base ? `Deployed the base ${result.base.slice(0, 12)} (nothing layered).` : `Deployed ${result.deployed.slice(0, 12)} (base ${result.base.slice(0, 12)}).`);
    lines.push(result.rebooting ? "Rebooting." : 'Run "systemctl reboot" to start a reboot');
  }
  return lines.join("\n");
}

async function runLayer(options: LayerCliOptions, io: CommandIO, request: LayerOpRequest): Promise<number> {
  const settings = await cliSettings(options);
  const result = (await viaAgent(settings, { op: "layer", ...request, dryRun: options["dry-run"] ?? false, cacheOnly: options["cache-only"] ?? false, reboot: options.reboot ?? false })) as LayerOpResult & { rebooting?: boolean };
  printResult(io, options.json, result, render(result, options["dry-run"] ?? false));
  return 0;
}

/** A positional that names a file (./x.deb, /tmp/x.deb, x.deb): a local package; anything else: a package name. */
function splitLocal(args: string[]): { names: string[]; local: string[] } {
  const isFile = (arg: string) => arg.endsWith(".deb") || arg.includes("/");
  return { names: args.filter((a) => !isFile(a)), local: args.filter(isFile).map((a) => resolve(a)) };
}

export const installCommand = defineCommand({
  name: "install",
  description: "Layer packages (names from the configured sources, or local .deb files) onto the base, in a new deployment.",
  positionals: [{ name: "PACKAGE...", description: "Package names, or paths of .deb files", required: true }],
  options: {
    ...LAYER_OPTIONS,
    idempotent: { type: "boolean", description: "Do nothing for a package already requested" },
    "allow-inactive": { type: "boolean", description: "Record a request for a package the base already has" },
  },
  notes: [
    "Several installs in a row accumulate in the pending deployment. An update from the server carries the layered packages onto its new base.",
    "Exit status: 0 done or no change, 1 refused or failed (the reason is printed), 2 on a usage error.",
  ],
  run: ({ options, positionals, io }) => {
    const { names, local } = splitLocal(positionals);
    return runLayer(options, io, { install: names, installLocal: local, idempotent: options.idempotent ?? false, allowInactive: options["allow-inactive"] ?? false });
  },
});

export const uninstallCommand = defineCommand({
  name: "uninstall",
  description: "Remove layered packages (by name) in a new deployment.",
  positionals: [{ name: "PACKAGE...", description: "Names of layered packages (not needed with --all)" }],
  options: {
    ...LAYER_OPTIONS,
    all: { type: "boolean", short: "a", description: "Remove every layered package" },
    idempotent: { type: "boolean", description: "Do nothing for a package that is not requested" },
  },
  run: ({ options, positionals, io }) => {
    if (!options.all && positionals.length === 0) throw new UsageError("name the packages to uninstall, or give --all");
    return runLayer(options, io, { uninstall: positionals, uninstallAll: options.all ?? false, idempotent: options.idempotent ?? false });
  },
});

const overrideRemove = defineCommand({
  name: "remove",
  description: "Remove base packages in a new deployment.",
  positionals: [{ name: "PACKAGE...", description: "Names of base packages", required: true }],
  options: LAYER_OPTIONS,
  run: ({ options, positionals, io }) => runLayer(options, io, { overrideRemove: positionals }),
});

const overrideReplace = defineCommand({
  name: "replace",
  description: "Replace base packages with local .deb files in a new deployment.",
  positionals: [{ name: "DEB...", description: "Paths of .deb files, each replacing the base package of its name", required: true }],
  options: LAYER_OPTIONS,
  run: ({ options, positionals, io }) => runLayer(options, io, { overrideReplace: positionals.map((p) => resolve(p)) }),
});

const overrideReset = defineCommand({
  name: "reset",
  description: "Drop overrides: the base packages come back as the base has them.",
  positionals: [{ name: "PACKAGE...", description: "Packages whose override to drop (not needed with --all)" }],
  options: { ...LAYER_OPTIONS, all: { type: "boolean", short: "a", description: "Drop every override" } },
  run: ({ options, positionals, io }) => {
    if (!options.all && positionals.length === 0) throw new UsageError("name the packages whose override to reset, or give --all");
    return runLayer(options, io, { overrideReset: options.all ? "all" : positionals });
  },
});

export const overrideCommand = defineCommand({
  name: "override",
  description: "Remove or replace packages of the base, or reset those overrides.",
  subcommands: [overrideRemove, overrideReplace, overrideReset],
});

export const refreshMdCommand = defineCommand({
  name: "refresh-md",
  description: "Fetch the package indices that install resolves with (apt-get update with the layering sources).",
  options: { ...COMMON_OPTIONS, json: { type: "boolean", description: "Print {fetched} as JSON" } },
  async run({ options, io }) {
    const settings = await cliSettings(options);
    const result = await refreshIndices({ rootDir: settings.rootDir, aptEtc: settings.layeringAptDir, serverSource: layeringServerSource(settings), stateDir: layeringDirs(settings).stateDir });
    printResult(io, options.json, result, result.fetched > 0 ? `Fetched ${result.fetched} index file(s).` : "Package indices are up to date.");
  },
});

export const usroverlayCommand = defineCommand({
  name: "usroverlay",
  description: "Make /usr writable until the next reboot with a transient overlay (ostree admin unlock): changes there are lost at reboot.",
  options: { ...COMMON_OPTIONS, hotfix: { type: "boolean", description: "Keep the changes across reboots, in a clone of the deployment (ostree admin unlock --hotfix)" } },
  async run({ options, io }) {
    const settings = await cliSettings(options);
    await runOstree(["admin", "unlock", `--sysroot=${settings.sysroot}`, ...(options.hotfix ? ["--hotfix"] : [])]);
    io.stdout.write(options.hotfix ? "Development mode enabled with --hotfix: changes to /usr persist across reboots.\n" : "Development mode enabled. A writable overlayfs is now mounted on /usr.\nAll changes there will be discarded on reboot.\n");
  },
});
