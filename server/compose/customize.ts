/** The image's own changes on top of the packages, in rpm-ostree's order: add-files, units, default target, postprocess, remove-files. */
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { installAgent, type AgentTrust } from "./agent.ts";
import { runInChroot } from "../../shared/chroot.ts";
import { expandPattern } from "./glob.ts";
import type { ComposeProgress } from "./progress.ts";
import type { Recipe } from "./recipe.ts";

/** `trust`: what the image's agent trusts, its root (docs/trust.md) and its server's APT repository key (docs/layering.md). */
export async function customizeRootfs(root: string, recipe: Recipe, progress: ComposeProgress, work: string, trust: AgentTrust = { trustRoot: null, aptKeyring: null }): Promise<void> {
  if (recipe.agent) await installAgent(root, recipe, join(work, "agent-bundle"), progress, trust);
  progress.phase("customize", `${recipe.addFiles.length} files, ${recipe.units.length} units, ${recipe.postprocess.length} scripts`);
  for (const [source, destination] of recipe.addFiles) {
    const target = join(root, destination);
    await mkdir(dirname(target), { recursive: true });
    await copyFile(source, target);
  }
  if (recipe.units.length > 0) {
    await runInChroot(root, ["systemctl", "enable", ...recipe.units], { what: `enabling units ${recipe.units.join(", ")}` });
  }
  if (recipe.defaultTarget) {
    await runInChroot(root, ["systemctl", "set-default", recipe.defaultTarget], { what: `setting default target ${recipe.defaultTarget}` });
  }
  for (const [index, script] of recipe.postprocess.entries()) {
    await runInChroot(root, ["/bin/sh", "-e"], {
      input: script,
      env: { SOURCE_DATE_EPOCH: String(recipe.sourceDateEpoch) },
      what: `postprocess script ${index + 1}`,
    });
  }
  for (const pattern of recipe.removeFiles) {
    for (const path of await expandPattern(root, pattern)) await rm(join(root, path), { recursive: true, force: true });
  }
}
