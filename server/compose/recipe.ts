/**
 * Loads an image recipe: the image file and its includes (distro), then the machine file, then
 * the image's own keys on top, like Yocto's DISTRO / MACHINE / image split. Lists append, other
 * keys override. Every error names the file, the key and the problem.
 */
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { AptOstreeError } from "../../shared/errors.ts";
import { canonicalJson } from "../../shared/wire/canonical-json.ts";
import { FragmentSchema, LIST_KEYS, type Fragment } from "./recipe-schema.ts";

export class RecipeError extends AptOstreeError {
  constructor(file: string, key: string | null, problem: string) {
    super("E_RECIPE", `${file}${key ? `: ${key}` : ""}: ${problem}`);
  }
}

export interface Recipe {
  distro: string;
  suite: string;
  mirror: string;
  components: string[];
  updates: boolean;
  security: false | { mirror: string; suite: string };
  variant: string;
  sourceDateEpoch: number;
  machine: string;
  image: string;
  architecture: string;
  ref: string;
  kernelPackage: string | null;
  bootloaderPackages: string[];
  kernelArgs: string[];
  initramfsArgs: string[];
  packages: string[];
  units: string[];
  defaultTarget: string | null;
  /** [absolute source on the host, absolute destination in the image]. */
  addFiles: Array<[string, string]>;
  removeFiles: string[];
  /** Install the device agent (server/compose/agent.ts). */
  agent: boolean;
  /** Inline scripts, then the contents of `postprocess-script` files. */
  postprocess: string[];
  /** Which file declared each package, for error messages. */
  packageOrigins: Map<string, string>;
  /** sha256 over the merged recipe and the contents of every file it pulls in. */
  digest: string;
  /** The files read, relative to the recipes directory, in merge order. */
  files: string[];
}

interface Layer {
  file: string;
  fragment: Fragment;
}

export async function loadRecipe(recipesDir: string, image: string, machine: string): Promise<Recipe> {
  const imageFile = join(recipesDir, "images", `${image}.yaml`);
  const machineFile = join(recipesDir, "conf", "machine", `${machine}.yaml`);
  await mustExist(imageFile, recipesDir, `no image recipe '${image}'`);
  await mustExist(machineFile, recipesDir, `no machine '${machine}'`);

  const imageLayers = await loadWithIncludes(imageFile, recipesDir, []);
  const own = imageLayers.pop()!;
  const layers = [...imageLayers, ...(await loadWithIncludes(machineFile, recipesDir, [])), own];
  return resolveRecipe(layers, recipesDir, image, machine);
}

async function loadWithIncludes(file: string, recipesDir: string, stack: string[]): Promise<Layer[]> {
  const name = relative(recipesDir, file);
  if (stack.includes(file)) {
    throw new RecipeError(relative(recipesDir, stack.at(-1)!), "include", `include cycle: ${[...stack, file].map((f) => relative(recipesDir, f)).join(" -> ")}`);
  }
  const fragment = await readFragment(file, name);
  const layers: Layer[] = [];
  const includes = fragment.include === undefined ? [] : [fragment.include].flat();
  for (const include of includes) {
    const target = resolve(dirname(file), include);
    await mustExist(target, recipesDir, `include '${include}' does not exist`, name, "include");
    layers.push(...(await loadWithIncludes(target, recipesDir, [...stack, file])));
  }
  layers.push({ file: name, fragment: await resolveFilePaths(fragment, file, name) });
  return layers;
}

async function readFragment(file: string, name: string): Promise<Fragment> {
  let document: unknown;
  try {
    document = parseYaml(await readFile(file, "utf8")) ?? {};
  } catch (error) {
    if (error instanceof YAMLParseError) throw new RecipeError(name, null, `invalid YAML: ${error.message.split("\n")[0]}`);
    throw error;
  }
  if (typeof document !== "object" || Array.isArray(document)) throw new RecipeError(name, null, "must be a YAML mapping of keys");
  const parsed = FragmentSchema.safeParse(document);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    if (issue.code === "unrecognized_keys") {
      throw new RecipeError(name, issue.keys.join(", "), `unknown key (known keys: ${Object.keys(FragmentSchema.shape).join(", ")})`);
    }
    throw new RecipeError(name, issue.path.join("."), issue.message);
  }
  return parsed.data;
}

/** Makes add-files sources and postprocess-script absolute, and checks they exist. */
async function resolveFilePaths(fragment: Fragment, file: string, name: string): Promise<Fragment> {
  const base = dirname(file);
  const addFiles: Array<[string, string]> = [];
  for (const [index, [source, destination]] of (fragment["add-files"] ?? []).entries()) {
    const absolute = isAbsolute(source) ? source : resolve(base, source);
    await mustExistFile(absolute, name, `add-files.${index}`, `source '${source}' does not exist`);
    addFiles.push([absolute, destination]);
  }
  let script = fragment["postprocess-script"];
  if (script !== undefined) {
    script = resolve(base, script);
    await mustExistFile(script, name, "postprocess-script", `'${fragment["postprocess-script"]}' does not exist`);
  }
  return { ...fragment, "add-files": fragment["add-files"] ? addFiles : undefined, "postprocess-script": script };
}

function merge(layers: Layer[]): { merged: Fragment; origins: Map<string, string>; scripts: string[] } {
  const merged: Record<string, unknown> = {};
  const origins = new Map<string, string>();
  const scripts: string[] = [];
  for (const { file, fragment } of layers) {
    for (const [key, value] of Object.entries(fragment)) {
      if (key === "include" || value === undefined) continue;
      if (key === "postprocess-script") scripts.push(value as string);
      else if ((LIST_KEYS as readonly string[]).includes(key)) merged[key] = [...((merged[key] as unknown[]) ?? []), ...(value as unknown[])];
      else merged[key] = value;
    }
    for (const pkg of fragment.packages ?? []) if (!origins.has(pkg)) origins.set(pkg, file);
    if (fragment["kernel-package"]) origins.set(fragment["kernel-package"], file);
    for (const pkg of fragment["bootloader-packages"] ?? []) if (!origins.has(pkg)) origins.set(pkg, file);
  }
  return { merged: merged as Fragment, origins, scripts };
}

async function resolveRecipe(layers: Layer[], recipesDir: string, image: string, machine: string): Promise<Recipe> {
  const { merged, origins, scripts } = merge(layers);
  const where = layers.map((l) => l.file).join(" + ");
  const required = <K extends keyof Fragment>(key: K, hint: string): NonNullable<Fragment[K]> => {
    const value = merged[key];
    if (value === undefined) throw new RecipeError(where, key, `is not set by any of these files; ${hint}`);
    return value as NonNullable<Fragment[K]>;
  };
  const distro = required("distro", "set it in the distro recipe");
  const suite = required("suite", "set it in the distro recipe");
  const refTemplate = merged.ref ?? "${distro}/${suite}/${machine}/${image}";
  const ref = refTemplate.replace(/\$\{(distro|suite|machine|image)\}/g, (_m, name: string) => ({ distro, suite, machine, image })[name]!);
  if (/\$\{/.test(ref)) throw new RecipeError(where, "ref", `unknown variable in '${refTemplate}' (use \${distro}, \${suite}, \${machine}, \${image})`);
  if (merged["apt-ostree-agent"] && !(merged.packages ?? []).includes("nodejs")) {
    throw new RecipeError(where, "apt-ostree-agent", "the agent runs on Debian's nodejs: add nodejs to packages");
  }
  const postprocess = [...(merged.postprocess ?? []), ...(await Promise.all(scripts.map((s) => readFile(s, "utf8"))))];

  const recipe: Omit<Recipe, "digest"> = {
    distro,
    suite,
    mirror: required("mirror", "set it in the distro recipe"),
    components: merged.components ?? ["main"],
    updates: merged.updates ?? false,
    security: merged.security ?? false,
    variant: merged.variant ?? "minbase",
    sourceDateEpoch: required("source-date-epoch", "set it in the distro recipe (it fixes every timestamp in the image)"),
    machine,
    image,
    architecture: required("architecture", "set it in the machine recipe"),
    ref,
    kernelPackage: merged["kernel-package"] ?? null,
    bootloaderPackages: unique(merged["bootloader-packages"] ?? []),
    kernelArgs: merged["kernel-args"] ?? [],
    initramfsArgs: merged["initramfs-args"] ?? [],
    packages: unique(merged.packages ?? []),
    units: unique(merged.units ?? []),
    defaultTarget: merged["default-target"] ?? null,
    addFiles: merged["add-files"] ?? [],
    removeFiles: merged["remove-files"] ?? [],
    agent: merged["apt-ostree-agent"] ?? false,
    postprocess,
    packageOrigins: origins,
    files: layers.map((l) => l.file),
  };
  return { ...recipe, digest: await digestRecipe(recipe) };
}

async function digestRecipe(recipe: Omit<Recipe, "digest">): Promise<string> {
  const hash = createHash("sha256");
  const { packageOrigins: _origins, files: _files, addFiles, ...rest } = recipe;
  hash.update(canonicalJson({ ...rest, addFiles: addFiles.map(([, destination]) => destination) }));
  for (const [source] of addFiles) hash.update(await readFile(source));
  return hash.digest("hex");
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}

async function mustExist(path: string, recipesDir: string, problem: string, file?: string, key?: string): Promise<void> {
  const found = await stat(path).then(() => true, () => false);
  if (!found) throw new RecipeError(file ?? relative(recipesDir, path), key ?? null, problem);
}

async function mustExistFile(path: string, file: string, key: string, problem: string): Promise<void> {
  const info = await stat(path).catch(() => null);
  if (!info?.isFile()) throw new RecipeError(file, key, problem);
}
