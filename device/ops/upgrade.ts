/**
 * `upgrade`, `deploy VERSION` and `rebase REF` as one operation on an agent (the running one,
 * through the control socket, or one the CLI loads itself): fetch the channel's signed manifest,
 * check it names what was asked for, and stage it as a manual update (no reboot unless asked).
 */
import type { DeviceTrust } from "../trust/device-trust.ts";
import { randomBytes } from "node:crypto";
import { AptOstreeError } from "../../shared/errors.ts";
import { verifySignedManifest } from "../../shared/verify/manifest.ts";
import type { Manifest } from "../../shared/wire/manifest.ts";
import type { Agent } from "../agent/agent.ts";
import { isBusy, type AgentState } from "../agent/machine.ts";
import type { AgentSettings } from "../config/settings.ts";
import { fetchChannelManifest, repoUrl } from "../update/channel.ts";

export interface UpgradeRequest {
  /** Another ref to follow (rebase); default: the booted deployment's origin, else the configured ref. */
  ref?: string;
  /** Only this version (deploy VERSION); the channel must publish it. */
  version?: string;
  /** Only say whether an update is available. */
  check?: boolean;
  reboot?: boolean;
}

export interface UpgradeResult {
  available: boolean;
  manifest: Pick<Manifest, "ref" | "commit" | "version" | "sequence">;
  booted: { commit: string; version: string } | null;
  state: AgentState["name"];
  error?: string;
}

export class UpgradeError extends AptOstreeError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

export async function upgrade(agent: Agent, settings: AgentSettings, trust: DeviceTrust, request: UpgradeRequest): Promise<UpgradeResult> {
  const booted = await agent.bootedDeployment();
  const ref = request.ref ?? (booted?.origin || settings.ref);
  if (!ref) throw new UpgradeError("E_NO_REF", "no ref to follow: the booted deployment has no origin and 'ref' is not configured");
  const signed = await fetchChannelManifest(repoUrl(settings), settings.channel, ref);
  // A repo that cannot answer for roots leaves the trusted root as it is (the agent logs the same).
  await trust.refresh().catch(() => false);
  const manifest = verifySignedManifest(signed, { signers: trust.signers("release"), now: new Date(), architecture: settings.architecture, ref, acceptedSequence: agent.acceptedSequence(ref) });
  if (request.version !== undefined && manifest.version !== request.version) {
    throw new UpgradeError("E_VERSION_NOT_PUBLISHED", `channel ${settings.channel} publishes ${ref} version ${manifest.version}, not ${request.version}; the server signs manifests only for what a channel publishes`);
  }
  const summary = { ref: manifest.ref, commit: manifest.commit, version: manifest.version, sequence: manifest.sequence };
  const bootedRef = booted ? { commit: booted.base, version: booted.version ?? "" } : null;
  const available = manifest.commit !== booted?.base;
  if (request.check || !available) return { available, manifest: summary, booted: bootedRef, state: agent.state.name };
  const current = agent.state;
  if (current.name === "staged" && current.target.commit === manifest.commit) {
    if (request.reboot) await agent.rebootNow();
    return { available, manifest: summary, booted: bootedRef, state: agent.state.name };
  }
  if (isBusy(current)) {
    const advice = current.name === "downloading" ? "wait or run 'apt-ostree cancel'" : current.name === "staged" ? "reboot into it, or drop it with 'apt-ostree cleanup -p'" : "wait for it to finish";
    throw new UpgradeError("E_BUSY", `an update to ${current.target.version} is ${current.name}; ${advice}`);
  }
  const id = `local-${randomBytes(4).toString("hex")}`;
  await agent.acceptManifest(id, signed, { ref, manual: true });
  const state = await agent.waitFor((s) => !(s.name === "downloading" && s.target.command === id), 3_600_000);
  if (state.name === "failed") return { available, manifest: summary, booted: bootedRef, state: state.name, error: state.error };
  if (request.reboot && state.name === "staged") await agent.rebootNow();
  return { available, manifest: summary, booted: bootedRef, state: agent.state.name };
}
