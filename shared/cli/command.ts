/** Command definitions: typed options derived from the spec, subcommands, and the I/O a command gets. */
export interface OptionSpec {
  type: "string" | "boolean";
  description: string;
  short?: string;
  /** Placeholder in usage, e.g. DIR. */
  valueName?: string;
  required?: boolean;
  multiple?: boolean;
  default?: string | boolean;
}

export interface PositionalSpec {
  name: string;
  description: string;
  required?: boolean;
}

type OptionValue<S extends OptionSpec> = S["type"] extends "boolean" ? boolean : S["multiple"] extends true ? string[] : string;

export type ParsedOptions<O extends Record<string, OptionSpec>> = {
  [K in keyof O]: O[K]["required"] extends true ? OptionValue<O[K]> : O[K] extends { default: unknown } ? OptionValue<O[K]> : OptionValue<O[K]> | undefined;
};

export interface CommandIO {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
}

export interface CommandContext<O extends Record<string, OptionSpec>> {
  options: ParsedOptions<O>;
  positionals: string[];
  io: CommandIO;
}

export interface Command<O extends Record<string, OptionSpec> = Record<string, OptionSpec>> {
  name: string;
  description: string;
  options?: O;
  positionals?: PositionalSpec[];
  /** Extra lines for --help (exit codes, examples). */
  notes?: string[];
  subcommands?: Array<Command<any>>;
  /** Returns the exit status (default 0). */
  run?: (context: CommandContext<O>) => Promise<number | void>;
}

export function defineCommand<const O extends Record<string, OptionSpec>>(command: Command<O>): Command<O> {
  return command;
}

/** Prints a result: JSON as the last stdout line with --json, text otherwise. */
export function printResult(io: CommandIO, json: boolean | undefined, value: unknown, text: string): void {
  io.stdout.write(json ? `${JSON.stringify(value)}\n` : text.endsWith("\n") ? text : `${text}\n`);
}
