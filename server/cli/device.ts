import { defineCommand, printResult } from "../../shared/cli/command.ts";
import type { DeviceRecord } from "../fleet/store.ts";
import { API_CLIENT_OPTIONS, apiClient } from "./api-client.ts";

const deployment = (ref: DeviceRecord["booted"]) => (ref ? `${ref.version} (${ref.commit.slice(0, 12)})` : "-");

/** The deployments a device reported, rpm-ostree's words. */
export function renderDeployments(d: DeviceRecord): string[] {
  return [`  booted:   ${deployment(d.booted)}`, `  staged:   ${deployment(d.staged)}`, `  pending:  ${deployment(d.pending)}`, `  rollback: ${deployment(d.rollback)}`];
}

export function renderDevice(d: DeviceRecord): string {
  const booted = deployment(d.booted);
  return `${d.id.padEnd(20)} ${d.enrollment.padEnd(8)} ${(d.online ? "online" : "offline").padEnd(7)} ${(d.state ?? "-").padEnd(11)} ${booted.padEnd(22)} ${d.groups.join(",") || "-"}`;
}

const list = defineCommand({
  name: "list",
  description: "List devices: enrollment, online, state, booted version, groups.",
  options: { ...API_CLIENT_OPTIONS },
  async run({ options, io }) {
    const { devices } = (await (await apiClient(options, io.env)).call("GET", "devices")) as { devices: DeviceRecord[] };
    const header = `${"ID".padEnd(20)} ${"ENROLL".padEnd(8)} ${"ONLINE".padEnd(7)} ${"STATE".padEnd(11)} ${"BOOTED".padEnd(22)} GROUPS`;
    printResult(io, options.json, devices, devices.length === 0 ? "No devices." : [header, ...devices.map(renderDevice)].join("\n"));
  },
});

const show = defineCommand({
  name: "show",
  description: "Show a device and its recent history.",
  positionals: [{ name: "ID", description: "Device id", required: true }],
  options: { ...API_CLIENT_OPTIONS },
  async run({ options, positionals, io }) {
    const answer = await (await apiClient(options, io.env)).call("GET", `devices/${encodeURIComponent(positionals[0]!)}`);
    const events = (answer.events as Array<{ at: string; kind: string; report: { state?: string; rolledBack?: { reason: string } } | null }>).map(
      (e) => `  ${e.at}  ${e.kind}${e.report?.state ? ` ${e.report.state}` : ""}${e.report?.rolledBack ? `: ${e.report.rolledBack.reason}` : ""}`,
    );
    printResult(io, options.json, answer, [renderDevice(answer.device), ...renderDeployments(answer.device), "History (newest first):", ...events].join("\n"));
  },
});

const accept = defineCommand({
  name: "accept",
  description: "Accept a pending device so it may connect.",
  positionals: [{ name: "ID", description: "Device id", required: true }],
  options: { ...API_CLIENT_OPTIONS },
  async run({ options, positionals, io }) {
    const { device } = await (await apiClient(options, io.env)).call("POST", `devices/${encodeURIComponent(positionals[0]!)}/accept`, {});
    printResult(io, options.json, device, `Accepted ${device.id}`);
  },
});

const reject = defineCommand({
  name: "reject",
  description: "Reject a device: it stays listed, with its key, and is refused from now on (its connection is ended); accept undoes it.",
  positionals: [{ name: "ID", description: "Device id", required: true }],
  options: { ...API_CLIENT_OPTIONS },
  async run({ options, positionals, io }) {
    const { device } = await (await apiClient(options, io.env)).call("POST", `devices/${encodeURIComponent(positionals[0]!)}/reject`, {});
    printResult(io, options.json, device, `Rejected ${device.id}`);
  },
});

const remove = defineCommand({
  name: "delete",
  description: "Delete a device: its record, history, rollout memberships and retained messages; if it connects again it enrolls as pending.",
  positionals: [{ name: "ID", description: "Device id", required: true }],
  options: { ...API_CLIENT_OPTIONS },
  async run({ options, positionals, io }) {
    const { device } = await (await apiClient(options, io.env)).call("DELETE", `devices/${encodeURIComponent(positionals[0]!)}`);
    printResult(io, options.json, device, `Deleted ${device.id}`);
  },
});

const tags = defineCommand({
  name: "tags",
  description: "Replace a device's tags (rollout selectors match them with tag=NAME); no TAG clears them.",
  positionals: [
    { name: "ID", description: "Device id", required: true },
    { name: "TAG...", description: "Tags to set" },
  ],
  options: { ...API_CLIENT_OPTIONS },
  async run({ options, positionals, io }) {
    const [id, ...values] = positionals;
    const { device } = await (await apiClient(options, io.env)).call("POST", `devices/${encodeURIComponent(id!)}/tags`, { tags: values });
    printResult(io, options.json, device, `${device.id}: tags ${device.tags.join(", ") || "(none)"}`);
  },
});

export const deviceCommand = defineCommand({
  name: "device",
  description: "List, inspect, accept, reject, delete and tag devices (through the server's REST API).",
  subcommands: [list, show, accept, reject, remove, tags],
});
