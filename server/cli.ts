import { defineCommand } from "../shared/cli/command.ts";
import { runProcess } from "../shared/cli/main.ts";
import { aptRepoCommand } from "./cli/apt-repo.ts";
import { composeCommand } from "./cli/compose.ts";
import { dbCommand } from "./cli/db.ts";
import { imageCommand } from "./cli/image.ts";
import { keysCommand } from "./cli/keys.ts";
import { publishCommand } from "./cli/publish.ts";
import { deviceCommand } from "./cli/device.ts";
import { rolloutCommand } from "./cli/rollout.ts";
import { serveCommand } from "./cli/serve.ts";
import { tlsCommand } from "./cli/tls.ts";

export const serverCommand = defineCommand({
  name: "apt-ostree-server",
  description: "Compose, sign, publish and serve OSTree OS images for Debian appliances.",
  subcommands: [composeCommand, publishCommand, aptRepoCommand, serveCommand, rolloutCommand, deviceCommand, keysCommand, tlsCommand, dbCommand, imageCommand],
});

await runProcess(serverCommand);
