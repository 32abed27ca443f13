/**
 * Runs a command tree: finds the subcommand, parses its options strictly (an unknown flag is a
 * usage error), prints --help, and turns errors into one line on stderr and an exit status.
 */
import { parseArgs } from "node:util";
import { AptOstreeError, UsageError, errorChain } from "../errors.ts";
import type { Command, CommandIO, OptionSpec } from "./command.ts";
import { renderUsage } from "./usage.ts";

export async function runMain(root: Command<any>, argv: string[], io: CommandIO): Promise<number> {
  const path = [root.name];
  let command = root;
  let rest = argv;
  try {
    while (command.subcommands?.length) {
      const [next, ...after] = rest;
      if (next === undefined || next === "-h" || next === "--help") {
        io.stdout.write(renderUsage(command, path));
        return next === undefined ? 2 : 0;
      }
      const sub = command.subcommands.find((c) => c.name === next);
      if (!sub) throw new UsageError(`unknown command '${next}' (commands: ${command.subcommands.map((c) => c.name).join(", ")})`);
      command = sub;
      path.push(sub.name);
      rest = after;
    }
    if (rest.includes("--help") || rest.includes("-h")) {
      io.stdout.write(renderUsage(command, path));
      return 0;
    }
    const { options, positionals } = parse(command, rest);
    const status = await command.run!({ options: options as never, positionals, io });
    return status ?? 0;
  } catch (error) {
    return reportError(error, path, io);
  }
}

function parse(command: Command<any>, argv: string[]): { options: Record<string, unknown>; positionals: string[] } {
  const specs = (command.options ?? {}) as Record<string, OptionSpec>;
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: Object.fromEntries(
        Object.entries(specs).map(([name, spec]) => [
          name,
          { type: spec.type, ...(spec.short ? { short: spec.short } : {}), ...(spec.multiple ? { multiple: true } : {}) },
        ]),
      ),
    });
  } catch (error) {
    throw new UsageError((error as Error).message.split("\n")[0]!.replace(/\. To specify a positional.*$/, ""));
  }
  const options: Record<string, unknown> = { ...parsed.values };
  for (const [name, spec] of Object.entries(specs)) {
    if (options[name] === undefined && spec.default !== undefined) options[name] = spec.default;
    if (options[name] === undefined && spec.required) throw new UsageError(`missing required option --${name}${spec.valueName ? ` ${spec.valueName}` : ""}`);
  }
  const allowed = command.positionals ?? [];
  const required = allowed.filter((p) => p.required).length;
  const variadic = allowed.at(-1)?.name.endsWith("...") ?? false;
  if (!variadic && parsed.positionals.length > allowed.length) throw new UsageError(`unexpected argument '${parsed.positionals[allowed.length]}'`);
  if (parsed.positionals.length < required) throw new UsageError(`missing argument ${allowed[parsed.positionals.length]!.name}`);
  return { options, positionals: parsed.positionals };
}

function reportError(error: unknown, path: string[], io: CommandIO): number {
  const line = errorChain(error).replace(/\s*\n\s*/g, " | ");
  if (error instanceof UsageError) {
    io.stderr.write(`error: ${line} (see '${path.join(" ")} --help')\n`);
    return 2;
  }
  io.stderr.write(`error: ${line}\n`);
  if (!(error instanceof AptOstreeError) && io.env.APT_OSTREE_DEBUG) io.stderr.write(`${(error as Error).stack ?? ""}\n`);
  return 1;
}

/** Entry point for bin scripts: real argv, stdio and environment. */
export async function runProcess(root: Command<any>): Promise<never> {
  const status = await runMain(root, process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
  process.exit(status);
}
