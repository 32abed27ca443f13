/** Kernel arguments: read from ostree's BLS entries, edited like `rpm-ostree kargs` (pure edits). */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { AptOstreeError } from "../../shared/errors.ts";

export class KargsError extends AptOstreeError {
  constructor(message: string) {
    super("E_KARGS", message);
  }
}

/** ostree's own arguments, written by ostree on every deploy: not the user's to edit. */
const OSTREE_OWNED = [/^ostree=/, /^init=\/ostree\//];

export function userKargs(options: string): string[] {
  return options.split(/\s+/).filter((arg) => arg && !OSTREE_OWNED.some((re) => re.test(arg)));
}

/** The options line of each BLS entry, default (next boot) first, like ostree orders deployments. */
export async function bootEntryOptions(sysroot: string): Promise<string[]> {
  const dir = join(sysroot, "boot", "loader", "entries");
  const entries: Array<{ version: number; options: string }> = [];
  for (const name of (await readdir(dir)).filter((n) => n.endsWith(".conf"))) {
    const text = await readFile(join(dir, name), "utf8");
    entries.push({ version: Number(/^version (\d+)$/m.exec(text)?.[1] ?? 0), options: /^options (.*)$/m.exec(text)?.[1] ?? "" });
  }
  return entries.sort((a, b) => b.version - a.version).map((e) => e.options);
}

export interface KargEdits {
  append: string[];
  delete: string[];
  replace: string[];
}

const keyOf = (arg: string) => arg.split("=", 1)[0]!;

/**
 * `append` adds (duplicates allowed, like console=); `delete` removes `K` (every value) or exactly
 * `K=V`; `replace K=V` sets the value of an existing `K`. Naming an argument that is not set fails.
 */
export function applyKargEdits(current: string[], edits: KargEdits): string[] {
  let args = [...current];
  for (const target of edits.delete) {
    const matches = (arg: string) => (target.includes("=") ? arg === target : keyOf(arg) === target);
    if (!args.some(matches)) throw new KargsError(`kernel argument '${target}' is not set`);
    args = args.filter((arg) => !matches(arg));
  }
  for (const replacement of edits.replace) {
    if (!replacement.includes("=")) throw new KargsError(`--replace needs KEY=VALUE, got '${replacement}'`);
    const key = keyOf(replacement);
    if (!args.some((arg) => keyOf(arg) === key)) throw new KargsError(`kernel argument '${key}' is not set; use --append`);
    args = args.map((arg) => (keyOf(arg) === key ? replacement : arg));
  }
  for (const added of edits.append) {
    if (/\s/.test(added) || added === "") throw new KargsError(`'${added}' is not one kernel argument`);
    args.push(added);
  }
  return args;
}
