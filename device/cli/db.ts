/** `db diff [FROM [TO]]` and `db list [REV]` over the deployments' commits, like rpm-ostree db. */
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { AptOstreeError } from "../../shared/errors.ts";
import { readImageCommitInfo, type ImageCommitInfo } from "../../shared/image/commit-metadata.ts";
import { diffPackages, renderPackageDiff } from "../../shared/image/package-diff.ts";
import { parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { readCommitObject } from "../../shared/ostree/repo.ts";
import type { AgentSettings } from "../config/settings.ts";
import { sysrootRepo, type Deployment } from "../sysroot/deployments.ts";
import { COMMON_OPTIONS, cliSettings, deploymentsOf } from "./context.ts";

/** A deployment named by version, commit (or a unique prefix of one, 6+ digits), or `booted`/`pending`/`rollback`. */
export function pickDeployment(deployments: Deployment[], spec: string): Deployment {
  const byRole = { booted: deployments.find((d) => d.booted), pending: deployments.find((d) => d.pending || d.staged), rollback: deployments.find((d) => d.rollback) }[spec];
  if (spec in { booted: 1, pending: 1, rollback: 1 }) {
    if (!byRole) throw new AptOstreeError("E_NO_DEPLOYMENT", `there is no ${spec} deployment`);
    return byRole;
  }
  const matches = deployments.filter((d) => d.version === spec || (/^[0-9a-f]{6,64}$/.test(spec) && d.checksum.startsWith(spec)));
  const unique = [...new Map(matches.map((d) => [d.checksum, d])).values()];
  if (unique.length === 0) throw new AptOstreeError("E_NO_DEPLOYMENT", `no deployment has version or commit '${spec}' (have: ${deployments.map((d) => d.version ?? d.checksum.slice(0, 12)).join(", ") || "none"})`);
  if (unique.length > 1) throw new AptOstreeError("E_AMBIGUOUS", `'${spec}' names several deployments; give more of the commit checksum`);
  return unique[0]!;
}

async function infoOf(settings: AgentSettings, deployment: Deployment): Promise<ImageCommitInfo> {
  return readImageCommitInfo(parseCommitObject(await readCommitObject(sysrootRepo(settings.sysroot), deployment.checksum)), `commit ${deployment.checksum.slice(0, 12)}`);
}

const diff = defineCommand({
  name: "diff",
  description: "Packages upgraded, downgraded, removed and added between two deployments (default: booted -> pending, else booted -> rollback).",
  positionals: [
    { name: "FROM", description: "Version, commit, or booted|pending|rollback (default booted)" },
    { name: "TO", description: "Version, commit, or booted|pending|rollback (default pending, else rollback)" },
  ],
  options: { ...COMMON_OPTIONS, json: { type: "boolean", description: "Print {from, to, upgraded, downgraded, removed, added} as JSON" } },
  async run({ options, positionals, io }) {
    const settings = await cliSettings(options);
    const deployments = await deploymentsOf(settings);
    const from = pickDeployment(deployments, positionals[0] ?? "booted");
    const to = pickDeployment(deployments, positionals[1] ?? (deployments.some((d) => d.pending || d.staged) ? "pending" : "rollback"));
    const result = diffPackages((await infoOf(settings, from)).packages, (await infoOf(settings, to)).packages);
    const header = `ostree diff commit from: ${from.version} (${from.checksum})\nostree diff commit to:   ${to.version} (${to.checksum})`;
    printResult(io, options.json, { from: { commit: from.checksum, version: from.version }, to: { commit: to.checksum, version: to.version }, ...result }, `${header}\n${renderPackageDiff(result)}`);
  },
});

const list = defineCommand({
  name: "list",
  description: "The packages of a deployment (default: booted).",
  positionals: [{ name: "REV", description: "Version, commit, or booted|pending|rollback" }],
  options: { ...COMMON_OPTIONS, json: { type: "boolean", description: "Print {commit, version, packages} as JSON" } },
  async run({ options, positionals, io }) {
    const settings = await cliSettings(options);
    const deployment = pickDeployment(await deploymentsOf(settings), positionals[0] ?? "booted");
    const info = await infoOf(settings, deployment);
    const text = [`ostree commit: ${info.version} (${deployment.checksum})`, ...info.packages.map((p) => ` ${p.name}-${p.version}.${p.architecture}`)].join("\n");
    printResult(io, options.json, { commit: deployment.checksum, version: info.version, packages: info.packages }, text);
  },
});

export const dbCommand = defineCommand({
  name: "db",
  description: "Query the package lists of the deployments' commits.",
  subcommands: [diff, list],
});
