/** Pure: the report a state says (DESIGN.md 3.1), on top of the device's deployment facts. */
import { REPORT_LIMITS, type Report } from "../../shared/wire/report.ts";
import type { AgentSettings } from "../config/settings.ts";
import type { Deployment } from "../sysroot/deployments.ts";
import type { AgentState } from "./machine.ts";

/** What every report says about the device: identity, groups and its deployments. */
export function reportBase(deployments: Deployment[], settings: Pick<AgentSettings, "architecture" | "groups">, deviceId: string, agentVersion: string, now: Date): Report {
  // The signed release: a package layer on the device is not a release the server knows.
  const ref = (d: Deployment | undefined) => (d ? { commit: d.base, version: d.version ?? "" } : null);
  const booted = deployments.find((d) => d.booted);
  return {
    deviceId,
    counter: 0,
    sent: now.toISOString(),
    state: "idle",
    agentVersion,
    architecture: settings.architecture,
    groups: settings.groups,
    ...(booted ? { booted: { ...ref(booted)!, ...(booted.layered ? { layered: reportedLayer(booted.layered) } : {}) } } : {}),
    staged: ref(deployments.find((d) => d.staged)),
    pending: ref(deployments.find((d) => d.pending)),
    rollback: ref(deployments.find((d) => d.rollback)),
  };
}

/** The layering's names, each list cut to what a report carries. */
function reportedLayer(layered: NonNullable<Deployment["layered"]>): NonNullable<NonNullable<Report["booted"]>["layered"]> {
  const cap = REPORT_LIMITS.layeredNames;
  const truncated = [layered.packages, layered.removed, layered.replaced].some((list) => list.length > cap);
  return { packages: layered.packages.slice(0, cap), removed: layered.removed.slice(0, cap), replaced: layered.replaced.slice(0, cap), ...(truncated ? { truncated } : {}) };
}

export interface ReportExtras {
  progress: { bytes: number; total: number } | null;
  health: Report["health"];
}

export function buildReport(base: Report, state: AgentState, extras: ReportExtras): Report {
  if (state.name === "idle") return { ...base, state: "idle" };
  const report: Report = { ...base, state: state.name, command: state.target.command };
  switch (state.name) {
    case "downloading":
      if (extras.progress) report.progress = extras.progress;
      // Why it waits (the network away, /var full), until bytes flow again.
      else if (state.waiting) report.error = state.waiting.error;
      return report;
    case "verifying":
      if (state.failedChecks.length > 0) report.health = state.failedChecks;
      return report;
    case "healthy":
      report.health = state.health.length > 0 ? state.health : extras.health;
      return report;
    case "rolled-back":
      report.rolledBack = { from: { commit: state.target.commit, version: state.target.version }, to: state.target.from, reason: state.reason };
      if (state.health.length > 0) report.health = state.health;
      return report;
    case "failed":
      report.error = state.error;
      return report;
    default:
      return report;
  }
}
