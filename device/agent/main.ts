import { defineCommand } from "../../shared/cli/command.ts";
import { runProcess } from "../../shared/cli/main.ts";
import { AptOstreeError } from "../../shared/errors.ts";

export const agentCommand = defineCommand({
  name: "apt-ostreed",
  description: "The apt-ostree device agent: receives updates over MQTT, verifies, stages, boots, checks health and rolls back.",
  async run() {
    throw new AptOstreeError("E_NOT_IMPLEMENTED", "the device agent is not implemented yet: it lands with the device-agent issue");
  },
});

await runProcess(agentCommand);
