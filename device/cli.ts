import { defineCommand } from "../shared/cli/command.ts";
import { runProcess } from "../shared/cli/main.ts";
import { notYetCommand } from "./not-yet.ts";

export const deviceCommand = defineCommand({
  name: "apt-ostree",
  description: "Manage the OSTree deployments of this device, in rpm-ostree's words.",
  subcommands: [
    notYetCommand("status", "Show the booted, staged, pending and rollback deployments"),
    notYetCommand("upgrade", "Download and stage the newest version of the followed ref"),
    notYetCommand("deploy", "Stage a given version or commit"),
    notYetCommand("rollback", "Make the previous deployment the default"),
    notYetCommand("rebase", "Follow another ref"),
    notYetCommand("kargs", "Show or change kernel arguments"),
    notYetCommand("cleanup", "Remove staged, pending, rollback deployments or cached metadata"),
    notYetCommand("db", "Show package changes between deployments"),
    notYetCommand("cancel", "Cancel the running transaction"),
  ],
});

await runProcess(deviceCommand);
