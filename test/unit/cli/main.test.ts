import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { defineCommand } from "../../../shared/cli/command.ts";
import { runMain } from "../../../shared/cli/main.ts";
import { AptOstreeError } from "../../../shared/errors.ts";

function io() {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (d) => (out += d));
  stderr.on("data", (d) => (err += d));
  return { io: { stdout, stderr, env: {} }, out: () => out, err: () => err };
}

const seen: unknown[] = [];
const leaf = defineCommand({
  name: "leaf",
  description: "A leaf command.",
  options: { name: { type: "string", required: true, valueName: "N", description: "a name" }, loud: { type: "boolean", description: "shout" } },
  positionals: [{ name: "THING", description: "a thing" }],
  async run({ options, positionals }) {
    seen.push({ options, positionals });
    if (options.name === "fail") throw new AptOstreeError("E_TEST", "it failed\nwith detail", { cause: new Error("root cause") });
  },
});
const many = defineCommand({
  name: "many",
  description: "Takes any number of things.",
  positionals: [{ name: "ID", description: "an id", required: true }, { name: "THING...", description: "things" }],
  async run({ positionals }) {
    seen.push(positionals);
  },
});
const root = defineCommand({ name: "tool", description: "A tool.", subcommands: [leaf, many] });

describe("command-line runner", () => {
  it("passes typed options and positionals to the command", async () => {
    const t = io();
    expect(await runMain(root, ["leaf", "--name", "x", "--loud", "thing"], t.io)).toBe(0);
    expect(seen.at(-1)).toEqual({ options: { name: "x", loud: true }, positionals: ["thing"] });
  });

  it.each([
    [["leaf"], /error: missing required option --name N \(see 'tool leaf --help'\)/],
    [["leaf", "--name", "x", "--nope"], /error: Unknown option '--nope'/],
    [["leaf", "--name", "x", "a", "b"], /error: unexpected argument 'b'/],
    [["nope"], /error: unknown command 'nope' \(commands: leaf, many\)/],
  ])("exits 2 with a one-line usage error for %j", async (argv, message) => {
    const t = io();
    expect(await runMain(root, argv, t.io)).toBe(2);
    expect(t.err()).toMatch(message);
    expect(t.err().trim().split("\n")).toHaveLength(1);
  });

  it("takes any number of arguments after a variadic last positional", async () => {
    expect(await runMain(root, ["many", "x", "a", "b", "c"], io().io)).toBe(0);
    expect(seen.at(-1)).toEqual(["x", "a", "b", "c"]);
    expect(await runMain(root, ["many"], io().io)).toBe(2);
  });

  it("exits 1 with the error chain on one line", async () => {
    const t = io();
    expect(await runMain(root, ["leaf", "--name", "fail"], t.io)).toBe(1);
    expect(t.err()).toBe("error: it failed | with detail: root cause\n");
  });

  it("prints --help with options and exit codes, exit 0", async () => {
    const t = io();
    expect(await runMain(root, ["leaf", "--help"], t.io)).toBe(0);
    expect(t.out()).toMatch(/Usage: tool leaf --name N \[THING\] \[options\]/);
    expect(t.out()).toMatch(/--loud\s+shout/);
    expect(t.out()).toMatch(/Exit status: 0 on success, 1 when the operation failed, 2 on a usage error/);
  });

  it("prints a command's own exit codes instead of the general line, once", async () => {
    const own = defineCommand({ name: "own", description: "Has its own codes.", notes: ["Exit status: 0 done, 77 nothing new, 1 failed, 2 usage."], async run() {} });
    const t = io();
    expect(await runMain(own, ["--help"], t.io)).toBe(0);
    expect(t.out().match(/Exit status:/g)).toHaveLength(1);
    expect(t.out()).toMatch(/Exit status: 0 done, 77 nothing new/);
  });
});
