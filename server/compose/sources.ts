import type { Recipe } from "./recipe.ts";

const DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

/** sources.list lines for a recipe: the suite, its -updates, its security suite. */
export function sourcesLines(recipe: Recipe, options: { signedBy: boolean }): string[] {
  const signed = options.signedBy ? `[signed-by=${DEBIAN_KEYRING}] ` : "";
  const components = recipe.components.join(" ");
  const lines = [`deb ${signed}${recipe.mirror} ${recipe.suite} ${components}`];
  if (recipe.updates) lines.push(`deb ${signed}${recipe.mirror} ${recipe.suite}-updates ${components}`);
  if (recipe.security) lines.push(`deb ${signed}${recipe.security.mirror} ${recipe.security.suite} ${components}`);
  return lines;
}

/** Every package the recipe asks for by name: its packages, the kernel, the bootloader. */
export function requestedPackages(recipe: Recipe): string[] {
  return [...new Set([...recipe.packages, ...(recipe.kernelPackage ? [recipe.kernelPackage] : []), ...recipe.bootloaderPackages])];
}
