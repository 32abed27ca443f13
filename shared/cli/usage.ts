import type { Command, OptionSpec } from "./command.ts";

const HELP: OptionSpec = { type: "boolean", short: "h", description: "Show this help and exit" };

const EXIT_STATUS = "Exit status:";
const EXIT_CODES = [`${EXIT_STATUS} 0 on success, 1 when the operation failed, 2 on a usage error.`];

/** Pure: the --help text of a command reached through `path` (e.g. ["apt-ostree-server", "compose"]). */
export function renderUsage(command: Command<any>, path: string[]): string {
  const options = Object.entries({ ...(command.options ?? {}), help: HELP }) as Array<[string, OptionSpec]>;
  const required = options.filter(([, spec]) => spec.required).map(([name, spec]) => `--${name} ${spec.valueName ?? "VALUE"}`);
  const positionals = (command.positionals ?? []).map((p) => (p.required ? p.name : `[${p.name}]`));
  const head = command.subcommands?.length
    ? `Usage: ${path.join(" ")} COMMAND [options]`
    : `Usage: ${[...path, ...required, ...positionals, "[options]"].join(" ")}`;
  const lines = [head, "", command.description, ""];
  if (command.subcommands?.length) {
    lines.push("Commands:");
    const width = Math.max(...command.subcommands.map((c) => c.name.length));
    for (const sub of command.subcommands) lines.push(`  ${sub.name.padEnd(width)}  ${sub.description.split("\n")[0]}`);
    lines.push("", `Run '${path.join(" ")} COMMAND --help' for a command's options.`, "");
  }
  if (command.positionals?.length) {
    lines.push("Arguments:");
    for (const p of command.positionals) lines.push(`  ${p.name.padEnd(22)}  ${p.description}`);
    lines.push("");
  }
  lines.push("Options:");
  for (const [name, spec] of options) {
    const flag = `${spec.short ? `-${spec.short}, ` : "    "}--${name}${spec.type === "string" ? ` ${spec.valueName ?? "VALUE"}` : ""}`;
    const extra = [spec.required ? "required" : null, spec.default !== undefined && spec.default !== false ? `default: ${spec.default}` : null, spec.multiple ? "repeatable" : null]
      .filter(Boolean)
      .join(", ");
    lines.push(`  ${flag.padEnd(26)}  ${spec.description}${extra ? ` (${extra})` : ""}`);
  }
  // A command that documents its own exit codes (upgrade's 77, the agent's) replaces the general line.
  const notes = command.notes ?? [];
  lines.push("", ...notes, ...(notes.some((note) => note.startsWith(EXIT_STATUS)) ? [] : EXIT_CODES));
  return `${lines.join("\n")}\n`;
}
