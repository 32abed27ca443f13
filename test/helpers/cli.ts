import { fileURLToPath } from "node:url";

export const SERVER_CLI = fileURLToPath(new URL("../../bin/apt-ostree-server.js", import.meta.url));
