import { defineCommand } from "../shared/cli/command.ts";
import { runProcess } from "../shared/cli/main.ts";
import { bootCheckCommand } from "./cli/boot-check.ts";
import { dbCommand } from "./cli/db.ts";
import { cleanupCommand, kargsCommand, rollbackCommand } from "./cli/deployments.ts";
import { installCommand, overrideCommand, refreshMdCommand, uninstallCommand, usroverlayCommand } from "./cli/layering.ts";
import { statusCommand } from "./cli/status.ts";
import { cancelCommand, deployCommand, rebaseCommand, upgradeCommand } from "./cli/upgrade.ts";

export const deviceCommand = defineCommand({
  name: "apt-ostree",
  description: "Manage the OSTree deployments of this device, in rpm-ostree's words.",
  notes: [
    "Operations that download or stage (upgrade, deploy VERSION, rebase, install, uninstall, override, cancel) run inside the agent through its",
    "control socket when apt-ostreed runs, so they never race with an update the server started; without it they run here.",
    "Exit status: 0 on success, 1 when the operation failed, 2 on a usage error, 77 from upgrade --check when nothing is new.",
  ],
  subcommands: [statusCommand, upgradeCommand, deployCommand, rollbackCommand, rebaseCommand, installCommand, uninstallCommand, overrideCommand, refreshMdCommand, usroverlayCommand, kargsCommand, cleanupCommand, dbCommand, cancelCommand, bootCheckCommand],
});

await runProcess(deviceCommand);
