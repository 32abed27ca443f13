/** `upgrade`, `deploy VERSION|COMMIT`, `rebase REF` and `cancel`: operations the agent runs. */
import { defineCommand, printResult, type CommandIO } from "../../shared/cli/command.ts";
import { AptOstreeError, UsageError } from "../../shared/errors.ts";
import { loadDeviceTrust } from "../trust/load.ts";
import { silentLogger } from "../../shared/log.ts";
import type { UpgradeResult } from "../ops/upgrade.ts";
import { sysrootRepo } from "../sysroot/deployments.ts";
import { deployRetaining } from "../sysroot/deploy.ts";
import { verifyCommitInRepo } from "../update/stage.ts";
import { readLayerInfo } from "../../shared/image/layer-metadata.ts";
import { parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { readCommitObject } from "../../shared/ostree/repo.ts";
import { COMMON_OPTIONS, cliSettings, deploymentsOf, viaAgent, type CommonOptions } from "./context.ts";

/** rpm-ostree's exit status for `upgrade --check` when there is nothing new. */
export const EXIT_NO_UPDATE = 77;

function renderUpgrade(result: UpgradeResult, check: boolean): string {
  const target = `${result.manifest.version} (${result.manifest.commit.slice(0, 12)})`;
  if (!result.available) return `No updates available: ${target} is booted.`;
  if (check) return `Update available: ${target}, booted ${result.booted ? result.booted.version : "(none)"}.`;
  if (result.error) return `Update to ${target} failed: ${result.error}`;
  if (result.state === "rebooting") return `Staged ${target}; rebooting.`;
  return `Staged ${target}. Run "apt-ostree upgrade --reboot" or "systemctl reboot" to start it.`;
}

async function runUpgrade(options: CommonOptions & { json?: boolean; check?: boolean; preview?: boolean; reboot?: boolean }, io: CommandIO, request: { ref?: string; version?: string }): Promise<number> {
  const settings = await cliSettings(options);
  const check = Boolean(options.check || options.preview);
  const result = (await viaAgent(settings, { op: "upgrade", ...request, check, reboot: options.reboot })) as UpgradeResult;
  let text = renderUpgrade(result, check);
  if (options.preview && result.available && result.booted) text += `\nRun "apt-ostree db diff ${result.booted.commit.slice(0, 12)} ${result.manifest.commit.slice(0, 12)}" once staged for the package changes.`;
  printResult(io, options.json, result, text);
  if (result.error) return 1;
  return check && !result.available ? EXIT_NO_UPDATE : 0;
}

const UPGRADE_OPTIONS = {
  ...COMMON_OPTIONS,
  json: { type: "boolean", description: "Print the result as JSON" },
  reboot: { type: "boolean", short: "r", description: "Reboot into the new deployment once it is staged" },
} as const;

export const upgradeCommand = defineCommand({
  name: "upgrade",
  description: "Download, verify and stage the version the channel publishes for the followed ref.",
  options: {
    ...UPGRADE_OPTIONS,
    check: { type: "boolean", description: "Only say whether an update is available (exit 77 when none)" },
    preview: { type: "boolean", description: "Like --check, and name the versions to compare" },
  },
  notes: ["Exit status: 0 staged or nothing to do, 77 with --check/--preview when no update is available, 1 on failure, 2 on a usage error."],
  run: ({ options, io }) => runUpgrade(options, io, {}),
});

export const rebaseCommand = defineCommand({
  name: "rebase",
  description: "Follow another ref: stage what the channel publishes for REF.",
  positionals: [{ name: "REF", description: "e.g. debian/bookworm/qemu-amd64/appliance-next", required: true }],
  options: UPGRADE_OPTIONS,
  run: ({ options, positionals, io }) => runUpgrade(options, io, { ref: positionals[0]! }),
});

export const deployCommand = defineCommand({
  name: "deploy",
  description: "Stage a given version (what the channel publishes) or a commit already in the local repo (e.g. the rollback).",
  positionals: [{ name: "VERSION|COMMIT", description: "A version string, or a 64-hex commit checksum", required: true }],
  options: UPGRADE_OPTIONS,
  async run({ options, positionals, io }) {
    const wanted = positionals[0]!;
    if (!/^[0-9a-f]{64}$/.test(wanted)) return runUpgrade(options, io, { version: wanted });
    // A local commit: its OSTree signatures must verify against the image keys before it is deployed.
    const settings = await cliSettings(options);
    const trust = await loadDeviceTrust(settings, silentLogger());
    // A package layer (docs/layering.md) is the device's own commit: its signed base must verify.
    const layerBase = await readCommitObject(sysrootRepo(settings.sysroot), wanted).then((bytes) => readLayerInfo(parseCommitObject(bytes))?.base ?? null, () => null);
    await verifyCommitInRepo(sysrootRepo(settings.sysroot), layerBase ?? wanted, trust.signers("image")).catch((error: AptOstreeError) => {
      throw error.code === "E_UNKNOWN_COMMIT" ? new AptOstreeError(error.code, `${error.message}; deploy a version the channel publishes instead`) : error;
    });
    if ((await deploymentsOf(settings)).find((d) => d.booted)?.checksum === wanted) throw new UsageError(`${wanted.slice(0, 12)} is already booted`);
    // Deployed by checksum: the deployment keeps following the booted one's ref.
    const origin = (await deploymentsOf(settings)).find((d) => d.booted)?.origin ?? (settings.ref || null);
    await deployRetaining({ sysroot: settings.sysroot, rootDir: settings.rootDir, osname: settings.osname, revision: wanted, stage: settings.stage, ...(origin && !/^[0-9a-f]{64}$/.test(origin) ? { originRefspec: origin } : {}) });
    printResult(io, options.json, { deployed: wanted }, `Deployed ${wanted.slice(0, 12)}; it boots next.`);
  },
});

export const cancelCommand = defineCommand({
  name: "cancel",
  description: "Cancel an update that is still downloading.",
  options: { ...COMMON_OPTIONS, json: { type: "boolean", description: "Print {cancelled, state} as JSON" } },
  async run({ options, io }) {
    const result = (await viaAgent(await cliSettings(options), { op: "cancel" })) as { cancelled: boolean; state: string };
    printResult(io, options.json, result, result.cancelled ? "Cancelled the download." : `Nothing to cancel (${result.state}).`);
  },
});
