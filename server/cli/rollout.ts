import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { UsageError } from "../../shared/errors.ts";
import { API_CLIENT_OPTIONS, apiClient } from "./api-client.ts";

interface RolloutView {
  id: string;
  ref: string;
  version: string;
  progress: { state: string; currentWave: number };
  pauseReason: string | null;
  plan: { maxFailuresPercent: number };
  waves: Array<{ wave: number; percent: number; devices: number; pending: number; inProgress: number; healthy: number; failed: number; rolledBack: number }>;
}

export function renderRollout(r: RolloutView): string {
  const lines = [
    `${r.id}  ${r.ref} ${r.version}  ${r.progress.state}${r.progress.state === "running" ? ` (wave ${r.progress.currentWave + 1} of ${r.waves.length})` : ""}`,
    ...(r.pauseReason ? [`  Reason: ${r.pauseReason}`] : []),
    `  Failure threshold: ${r.plan.maxFailuresPercent}%`,
    ...r.waves.map((w) => `  Wave ${w.wave} (${w.percent}%): ${w.devices} devices, ${w.healthy} healthy, ${w.inProgress} in progress, ${w.pending} pending, ${w.failed} failed, ${w.rolledBack} rolled back`),
  ];
  return lines.join("\n");
}

/** `group=G`, `tag=T`, `device=ID` into the API's selector. */
export function parseSelectors(values: string[]): { groups: string[]; tags: string[]; devices: string[] } {
  const selector = { groups: [] as string[], tags: [] as string[], devices: [] as string[] };
  for (const value of values) {
    const match = /^(group|tag|device)=(.+)$/.exec(value);
    if (!match) throw new UsageError(`--select: '${value}' is not group=NAME, tag=NAME or device=ID`);
    selector[`${match[1]}s` as "groups" | "tags" | "devices"].push(match[2]!);
  }
  if (values.length === 0) throw new UsageError("--select: name at least one group=, tag= or device=");
  return selector;
}

const create = defineCommand({
  name: "create",
  description: "Start a staged rollout of what a channel publishes for a ref.",
  options: {
    ref: { type: "string", valueName: "REF", required: true, description: "Ref to roll out" },
    version: { type: "string", valueName: "V", description: "Refuse unless the channel publishes this version" },
    channel: { type: "string", valueName: "NAME", default: "stable", description: "Channel whose manifest is sent" },
    select: { type: "string", valueName: "SEL", multiple: true, description: "group=G, tag=T or device=ID" },
    waves: { type: "string", valueName: "LIST", default: "1%,10%,50%,100%", description: "Cumulative wave sizes" },
    "wave-delay": { type: "string", valueName: "DURATION", default: "10m", description: "Pause between waves" },
    "wave-timeout": { type: "string", valueName: "DURATION", default: "30m", description: "Devices silent this long count as failed" },
    "max-failures": { type: "string", valueName: "PERCENT", default: "5%", description: "Pause when failures exceed this share of the devices" },
    ...API_CLIENT_OPTIONS,
  },
  async run({ options, io }) {
    const api = await apiClient(options, io.env);
    const body = {
      ref: options.ref,
      channel: options.channel,
      ...(options.version ? { version: options.version } : {}),
      select: parseSelectors(options.select ?? []),
      waves: options.waves,
      waveDelay: options["wave-delay"],
      waveTimeout: options["wave-timeout"],
      maxFailures: options["max-failures"],
    };
    const { rollout } = await api.call("POST", "rollouts", body);
    printResult(io, options.json, rollout, `Created ${renderRollout(rollout)}`);
  },
});

const list = defineCommand({
  name: "list",
  description: "List rollouts with their state and per-wave progress.",
  options: { ...API_CLIENT_OPTIONS },
  async run({ options, io }) {
    const { rollouts } = await (await apiClient(options, io.env)).call("GET", "rollouts");
    printResult(io, options.json, rollouts, rollouts.length === 0 ? "No rollouts." : rollouts.map(renderRollout).join("\n"));
  },
});

const show = defineCommand({
  name: "show",
  description: "Show one rollout: waves, devices, and why it paused.",
  positionals: [{ name: "ID", description: "Rollout id", required: true }],
  options: { ...API_CLIENT_OPTIONS },
  async run({ options, positionals, io }) {
    const { rollout } = await (await apiClient(options, io.env)).call("GET", `rollouts/${encodeURIComponent(positionals[0]!)}`);
    const devices = (rollout.devices as Array<{ deviceId: string; wave: number; status: string; detail: string | null }>).map(
      (m) => `    ${m.deviceId}  wave ${m.wave + 1}  ${m.status}${m.detail ? `  (${m.detail})` : ""}`,
    );
    printResult(io, options.json, rollout, [renderRollout(rollout), "  Devices:", ...devices].join("\n"));
  },
});

const action = (name: "pause" | "resume" | "abort", description: string) =>
  defineCommand({
    name,
    description,
    positionals: [{ name: "ID", description: "Rollout id", required: true }],
    options: { ...API_CLIENT_OPTIONS },
    async run({ options, positionals, io }) {
      const { rollout } = await (await apiClient(options, io.env)).call("POST", `rollouts/${encodeURIComponent(positionals[0]!)}/${name}`, {});
      printResult(io, options.json, rollout, renderRollout(rollout));
    },
  });

export const rolloutCommand = defineCommand({
  name: "rollout",
  description: "Create and steer staged rollouts (through the server's REST API).",
  subcommands: [create, list, show, action("pause", "Pause a running rollout"), action("resume", "Resume a paused rollout"), action("abort", "Abort a rollout for good")],
});
