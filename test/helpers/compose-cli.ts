import { execa } from "execa";
import { SERVER_CLI } from "./cli.ts";

import type { ComposeResult } from "../../server/compose/compose.ts";

/** Runs `apt-ostree-server compose --json` and parses the last stdout line, as scripts do. */
export async function composeWithCli(args: string[]): Promise<ComposeResult> {
  const result = await execa(process.execPath, [SERVER_CLI, "compose", "--json", ...args], { reject: false });
  if (result.exitCode !== 0) throw new Error(`compose exited ${result.exitCode}: ${result.stderr.split("\n").slice(-3).join("\n")}`);
  return JSON.parse(result.stdout.trim().split("\n").at(-1)!) as ComposeResult;
}
