import { defineCommand } from "../../shared/cli/command.ts";
import { runProcess } from "../../shared/cli/main.ts";
import { createLogger } from "../../shared/log.ts";
import { CONFIG_FILES, loadAgentSettings } from "../config/settings.ts";
import { runAgent, writeHttpClientCodeCache } from "./run.ts";

export const agentCommand = defineCommand({
  name: "apt-ostreed",
  description: "The apt-ostree device agent: receives updates over MQTT, verifies, stages, boots, checks health and rolls back.",
  options: {
    config: { type: "string", multiple: true, valueName: "FILE", description: `Config fragment, later ones win (default ${CONFIG_FILES.join(" then ")})` },
    "write-code-cache": { type: "string", valueName: "DIR", description: "Write the V8 code cache of the bundled HTTP client into DIR and exit (the agent runs this itself when its cache is missing)" },
  },
  notes: [
    "Settings (YAML, camelCase): server, mqtt, mqttAuth, deviceId, groups, ref, channel, architecture, osname,",
    "sysroot, stateDir, keysDir, healthDir, rootDir, bootIdFile, socket, grubenv, bootTries, rebootStrategy",
    "(immediate|window|command), rebootWindow, rebootCommand, stage, healthTimeoutSeconds,",
    "serverReachTimeoutSeconds, checkSystemdUnits, downloadStallSeconds, pollSeconds. See docs/agent.md.",
    "Exit status: 0 after SIGTERM, 1 when it cannot start (bad config, no pinned keys), 2 on a usage error.",
  ],
  async run({ options }) {
    if (options["write-code-cache"] !== undefined) {
      await writeHttpClientCodeCache(options["write-code-cache"]);
      return;
    }
    const settings = await loadAgentSettings(options.config && options.config.length > 0 ? options.config : CONFIG_FILES);
    const log = createLogger({ name: "agent" });
    const running = await runAgent(settings, log);
    await new Promise<void>((resolve) => {
      const stop = () => void running.stop().then(resolve);
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
    });
  },
});

// No top-level await: the bundle is CommonJS (device/bundle.ts).
void runProcess(agentCommand);
