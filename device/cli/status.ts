/** `apt-ostree status`: deployments in rpm-ostree's shape, the agent's state on top. */
import { readFile } from "node:fs/promises";
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { readAgentRecord } from "../agent/state-file.ts";
import type { AgentState } from "../agent/machine.ts";
import type { Deployment } from "../sysroot/deployments.ts";
import { COMMON_OPTIONS, cliSettings, deploymentsOf } from "./context.ts";

function when(timestamp: number | null): string {
  return timestamp === null ? "" : ` (${new Date(timestamp * 1000).toISOString().replace(/\.000Z$/, "Z")})`;
}

/** Pure: rpm-ostree's text layout. */
export function renderStatus(deployments: Deployment[], state: AgentState, verbose: boolean): string {
  const lines = [`State: ${state.name}${state.name === "idle" ? "" : ` (${state.target.version}, ${state.target.command})`}`, "Deployments:"];
  const label = (key: string, value: string) => `${key.padStart(26)}: ${value}`;
  for (const d of deployments) {
    const marks = [d.staged ? "staged" : "", d.pending && !d.staged ? "pending" : "", d.rollback ? "rollback" : "", d.pinned ? "pinned" : ""].filter(Boolean);
    lines.push(`${d.booted ? "●" : " "} ${d.origin ?? d.checksum}${marks.length > 0 ? ` (${marks.join(", ")})` : ""}`);
    lines.push(label("Version", `${d.version ?? "(none)"}${when(d.timestamp)}`));
    lines.push(label("Commit", d.checksum));
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
    json: { type: "boolean", description: "Print {state, deployments: [{id, checksum, version, origin, timestamp, booted, staged, pending, rollback, pinned, osname, serial}]}" },
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
    printResult(io, options.json, { state: record.state.name, update, deployments }, renderStatus(deployments, record.state, options.verbose ?? false));
  },
});
