import { defineCommand, printResult } from "../../shared/cli/command.ts";
import type { DeviceRecord } from "../fleet/store.ts";
import { UsageError } from "../../shared/errors.ts";
import { NAME_PATTERN } from "../../shared/wire/topics.ts";
import { API_CLIENT_OPTIONS, apiClient } from "./api-client.ts";
import { readDevicePublicKey } from "./device-key.ts";

const deployment = (ref: DeviceRecord["booted"]) => (ref ? `${ref.version} (${ref.commit.slice(0, 12)})` : "-");

/** The deployments a device reported, rpm-ostree's words. */
export function renderDeployments(d: DeviceRecord): string[] {
  return [`  booted:   ${deployment(d.booted)}`, `  staged:   ${deployment(d.staged)}`, `  pending:  ${deployment(d.pending)}`, `  rollback: ${deployment(d.rollback)}`];
}

export function renderDevice(d: DeviceRecord): string {
  const booted = deployment(d.booted);
  return `${d.id.padEnd(20)} ${d.enrollment.padEnd(13)} ${(d.online ? "online" : "offline").padEnd(7)} ${(d.state ?? "-").padEnd(11)} ${booted.padEnd(22)} ${d.groups.join(",") || "-"}`;
}

const list = defineCommand({
  name: "list",
  description: "List devices: enrollment, online, state, booted version, groups.",
  options: { ...API_CLIENT_OPTIONS },
  async run({ options, io }) {
    const { devices } = (await (await apiClient(options, io.env)).call("GET", "devices")) as { devices: DeviceRecord[] };
    const header = `${"ID".padEnd(20)} ${"ENROLL".padEnd(13)} ${"ONLINE".padEnd(7)} ${"STATE".padEnd(11)} ${"BOOTED".padEnd(22)} GROUPS`;
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
    const groups = `  groups:   ${answer.device.groups.join(", ") || "(none)"} (assigned); reported: ${answer.device.reportedGroups.join(", ") || "(none)"}`;
    printResult(io, options.json, answer, [renderDevice(answer.device), groups, ...renderDeployments(answer.device), "History (newest first):", ...events].join("\n"));
  },
});

const accept = defineCommand({
  name: "accept",
  description: "Accept a pending (or preauthorized, or rejected) device so it may connect; a revoked one needs rekey.",
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

/** `a,b` -> ["a", "b"], each a group name. */
function parseGroups(text: string, option: string): string[] {
  const groups = text.split(",").map((g) => g.trim()).filter(Boolean);
  const bad = groups.find((g) => !NAME_PATTERN.test(g));
  if (bad !== undefined) throw new UsageError(`${option}: '${bad}' is not a group name (lowercase letters, digits, '.', '_' or '-')`);
  return groups;
}

const preauthorize = defineCommand({
  name: "preauthorize",
  description: "Preauthorize a device by id and key: it is accepted at its first connection if it presents exactly that key, and refused with any other.",
  options: {
    id: { type: "string", valueName: "ID", required: true, description: "Device id (the agent's deviceId)" },
    key: { type: "string", valueName: "PUB", required: true, description: "The device's ed25519 public key: base64, or a file holding it" },
    groups: { type: "string", valueName: "A,B", description: "Groups to put it in (what rollouts select with group=)" },
    ...API_CLIENT_OPTIONS,
  },
  async run({ options, io }) {
    const body = { id: options.id, publicKey: await readDevicePublicKey(options.key), groups: options.groups === undefined ? [] : parseGroups(options.groups, "--groups") };
    const { device } = await (await apiClient(options, io.env)).call("POST", "devices", body);
    printResult(io, options.json, device, `Preauthorized ${device.id}${device.groups.length ? ` in ${device.groups.join(", ")}` : ""}`);
  },
});

const revoke = defineCommand({
  name: "revoke",
  description: "Revoke a device: its connection is ended and it is refused from now on, its key under any id; it stays listed as revoked. Accept cannot undo it; rekey gives it a new key.",
  positionals: [{ name: "ID", description: "Device id", required: true }],
  options: { ...API_CLIENT_OPTIONS },
  async run({ options, positionals, io }) {
    const { device } = await (await apiClient(options, io.env)).call("POST", `devices/${encodeURIComponent(positionals[0]!)}/revoke`, {});
    printResult(io, options.json, device, `Revoked ${device.id}; its key is refused from now on`);
  },
});

const rekey = defineCommand({
  name: "rekey",
  description: "Give a device a new key (e.g. its storage was replaced): the old key is refused from now on; a revoked or rejected device is accepted with the new one.",
  positionals: [{ name: "ID", description: "Device id", required: true }],
  options: {
    key: { type: "string", valueName: "PUB", required: true, description: "The device's new ed25519 public key: base64, or a file holding it" },
    ...API_CLIENT_OPTIONS,
  },
  async run({ options, positionals, io }) {
    const publicKey = await readDevicePublicKey(options.key);
    const { device } = await (await apiClient(options, io.env)).call("POST", `devices/${encodeURIComponent(positionals[0]!)}/rekey`, { publicKey });
    printResult(io, options.json, device, `${device.id}: new key ${device.publicKey} (${device.enrollment})`);
  },
});

const groups = defineCommand({
  name: "groups",
  description: "Show or set the groups a device is in: what rollouts select with group=. What the device reports about its groups is only shown.",
  positionals: [{ name: "ID", description: "Device id", required: true }],
  options: {
    set: { type: "string", valueName: "A,B", description: "Replace its groups with these ('' for none)" },
    "adopt-reported": { type: "boolean", description: "Replace its groups with those it reports now (the operator's decision, once: later reports change nothing)" },
    ...API_CLIENT_OPTIONS,
  },
  async run({ options, positionals, io }) {
    if (options.set !== undefined && options["adopt-reported"]) throw new UsageError("--set and --adopt-reported exclude each other");
    const client = await apiClient(options, io.env);
    const path = `devices/${encodeURIComponent(positionals[0]!)}`;
    let device: DeviceRecord;
    if (options.set !== undefined || options["adopt-reported"]) {
      const wanted = options.set !== undefined ? parseGroups(options.set, "--set") : ((await client.call("GET", path)).device as DeviceRecord).reportedGroups;
      device = (await client.call("POST", `${path}/groups`, { groups: wanted })).device;
    } else {
      device = (await client.call("GET", path)).device;
    }
    printResult(io, options.json, device, `${device.id}: groups ${device.groups.join(", ") || "(none)"}; reported ${device.reportedGroups.join(", ") || "(none)"}`);
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
  description: "List, inspect, preauthorize, accept, reject, revoke, rekey, delete, group and tag devices (through the server's REST API).",
  subcommands: [list, show, preauthorize, accept, reject, revoke, rekey, remove, groups, tags],
});
