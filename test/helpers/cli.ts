import { fileURLToPath } from "node:url";

export const SERVER_CLI = fileURLToPath(new URL("../../bin/apt-ostree-server.js", import.meta.url));
export const DEVICE_CLI = fileURLToPath(new URL("../../bin/apt-ostree.js", import.meta.url));
export const AGENT_CLI = fileURLToPath(new URL("../../bin/apt-ostreed.js", import.meta.url));
