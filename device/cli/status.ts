/** `apt-ostree status`: deployments in rpm-ostree's shape, the agent's state on top. */
import { readFile } from "node:fs/promises";
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { readAgentRecord } from "../agent/state-file.ts";
import type { AgentState } from "../agent/machine.ts";
import { sysrootRepo, type Deployment } from "../sysroot/deployments.ts";
import { readLayerInfo, type LayerInfo } from "../../shared/image/layer-metadata.ts";
import { parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { readCommitObject } from "../../shared/ostree/repo.ts";
import { COMMON_OPTIONS, cliSettings, deploymentsOf } from "./context.ts";

function when(timestamp: number | null): string {
  return timestamp === null ? "" : ` (${new Date(timestamp * 1000).toISOString().replace(/\.000Z$/, "Z")})`;
}

/** rpm-ostree's layering keys of `status --json`: the requests always, the base and outcome on a layered commit. */
export function layerKeys(layer: LayerInfo | null): Record<string, unknown> {
  const nevra = (p: { name: string; version: string; architecture: string }) => `${p.name}-${p.version}.${p.architecture}`;
  return {
    "requested-packages": layer?.request.packages ?? [],
    "requested-local-packages": layer?.request.localPackages.map((p) => `${p.sha256}:${nevra(p)}`) ?? [],
    "requested-base-removals": layer?.request.baseRemovals ?? [],
    "requested-base-local-replacements": layer?.request.baseLocalReplacements.map((p) => `${p.sha256}:${nevra(p)}`) ?? [],
    packages: layer?.outcome.layeredPackages ?? [],
    "base-removals": layer?.outcome.removedBasePackages.map(nevra) ?? [],
    "base-local-replacements": layer?.outcome.replacedBasePackages.map((r) => [nevra(r.to), nevra(r.from)]) ?? [],
    ...(layer ? { "base-checksum": layer.base } : {}),
  };
}

/** Pure: rpm-ostree's text layout. */
export function renderStatus(deployments: Deployment[], state: AgentState, verbose: boolean, layers: Map<string, LayerInfo | null> = new Map()): string {
  const lines = [`State: ${state.name}${state.name === "idle" ? "" : ` (${state.target.version}, ${state.target.command})`}`, "Deployments:"];
  const label = (key: string, value: string) => `${key.padStart(26)}: ${value}`;
  for (const d of deployments) {
    const marks = [d.staged ? "staged" : "", d.pending && !d.staged ? "pending" : "", d.rollback ? "rollback" : "", d.pinned ? "pinned" : ""].filter(Boolean);
    lines.push(`${d.booted ? "●" : " "} ${d.origin ?? d.checksum}${marks.length > 0 ? ` (${marks.join(", ")})` : ""}`);
    lines.push(label("Version", `${d.version ?? "(none)"}${when(d.timestamp)}`));
    const layer = layers.get(d.checksum) ?? null;
    if (layer) {
      lines.push(label("BaseCommit", layer.base));
      lines.push(label("Commit", d.checksum));
      if (layer.outcome.removedBasePackages.length > 0) lines.push(label("RemovedBasePackages", layer.outcome.removedBasePackages.map((p) => `${p.name} ${p.version}`).join(" ")));
      if (layer.outcome.replacedBasePackages.length > 0) lines.push(label("ReplacedBasePackages", layer.outcome.replacedBasePackages.map((r) => `${r.from.name} ${r.from.version} -> ${r.to.version}`).join(", ")));
      if (layer.outcome.layeredPackages.length > 0) lines.push(label("LayeredPackages", layer.outcome.layeredPackages.join(" ")));
      const inactive = layer.request.packages.filter((n) => !layer.outcome.layeredPackages.includes(n));
      if (inactive.length > 0) lines.push(label("InactiveRequests", inactive.join(" ")));
    } else lines.push(label("Commit", d.checksum));
    if (verbose) {
      lines.push(label("OS", d.osname));
      lines.push(label("Serial", String(d.serial)));
    }
    lines.push("");
  }
  if (state.name === "failed") lines.push(`Last update failed: ${state.error}`);
  if (state.name === "rolled-back") lines.push(`Rolled back from ${state.target.version}: ${state.reason}`);
  return lines.join("\n").replace(/\n+$/, "\n");
}

export const statusCommand = defineCommand({
  name: "status",
  description: "Show the booted, staged, pending and rollback deployments, and the agent's state.",
  options: {
    ...COMMON_OPTIONS,
    json: { type: "boolean", description: "Print {state, deployments: [{id, checksum, version, origin, timestamp, booted, staged, pending, rollback, pinned, osname, serial, base-checksum, requested-packages, packages, base-removals, ...}]}" },
    verbose: { type: "boolean", short: "v", description: "Also show the OS name and deployment serial" },
  },
  async run({ options, io }) {
    const settings = await cliSettings(options);
    const deployments = await deploymentsOf(settings);
    const record = await readFile(`${settings.stateDir}/state.json`).then(
      () => readAgentRecord(settings.stateDir),
      () => ({ state: { name: "idle" } as AgentState }),
    );
    const update = record.state.name === "idle" ? null : { ...record.state, target: { ...record.state.target, manifest: undefined } };
    const layers = new Map<string, LayerInfo | null>();
    for (const d of deployments) {
      const bytes = await readCommitObject(sysrootRepo(settings.sysroot), d.checksum).catch(() => null);
      // A layer made by a newer agent (after a rollback to this one) is shown without its details.
      let layer: LayerInfo | null = null;
      try {
        layer = bytes ? readLayerInfo(parseCommitObject(bytes)) : null;
      } catch {
        layer = null;
      }
      layers.set(d.checksum, layer);
    }
    const withLayers = deployments.map((d) => ({ ...d, ...layerKeys(layers.get(d.checksum) ?? null) }));
    printResult(io, options.json, { state: record.state.name, update, deployments: withLayers }, renderStatus(deployments, record.state, options.verbose ?? false, layers));
  },
});
