import { resolve } from "node:path";
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { diffPackages, renderPackageDiff } from "../../shared/image/package-diff.ts";
import { resolveRevision } from "../db/revision.ts";
import { defaultRepo } from "./defaults.ts";

const diff = defineCommand({
  name: "diff",
  description: "Show the packages added, removed, upgraded and downgraded between two composed versions.",
  positionals: [
    { name: "FROM", description: "Version or commit checksum", required: true },
    { name: "TO", description: "Version or commit checksum", required: true },
  ],
  options: {
    repo: { type: "string", valueName: "DIR", description: "Archive repo (default: $APT_OSTREE_REPO or /var/lib/apt-ostree-server/repo)" },
    ref: { type: "string", valueName: "REF", description: "Look versions up on this ref (needed when a version exists on several refs)" },
    json: { type: "boolean", description: "Print {from, to, upgraded, downgraded, removed, added} as JSON" },
  },
  async run({ options, positionals, io }) {
    const repo = resolve(options.repo ?? defaultRepo(io.env));
    const from = await resolveRevision(repo, positionals[0]!, options.ref);
    const to = await resolveRevision(repo, positionals[1]!, options.ref);
    const result = diffPackages(from.info.packages, to.info.packages);
    const header = [
      `ostree diff commit from: ${from.info.version} (${from.commit})`,
      `ostree diff commit to:   ${to.info.version} (${to.commit})`,
    ].join("\n");
    printResult(
      io,
      options.json,
      { from: { commit: from.commit, version: from.info.version }, to: { commit: to.commit, version: to.info.version }, ...result },
      `${header}\n${renderPackageDiff(result)}`,
    );
  },
});

export const dbCommand = defineCommand({
  name: "db",
  description: "Query the package database of composed commits.",
  subcommands: [diff],
});
