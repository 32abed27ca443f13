/**
 * Keeps the signed base of every layered deployment in the repo. A deployment's ref holds only
 * the layered commit it deploys; its parent survives a prune only while something else names it
 * (the followed ref, another deployment), and a layer cannot be rebuilt, uninstalled or carried
 * without it. rpm-ostree keeps `rpmostree/base/N` refs for the same reason; these are ours.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { listRefs, readCommitObject, setRef } from "../../shared/ostree/repo.ts";
import type { Deployment } from "../sysroot/deployments.ts";

export const BASE_REF_PREFIX = "apt-ostree/base/";

/** After a deploy: one ref per base under a layered deployment, none for bases no longer used. */
export async function syncBaseRefs(repo: string, deployments: Deployment[]): Promise<string[]> {
  const layeredOn = [...new Set(deployments.filter((d) => d.base !== d.checksum).map((d) => d.base))];
  // A base already gone cannot be kept (and a ref to a missing commit would break every prune).
  const bases: string[] = [];
  for (const base of layeredOn) if (await readCommitObject(repo, base).then(() => true, () => false)) bases.push(base);
  for (const [index, base] of bases.entries()) await setRef(repo, `${BASE_REF_PREFIX}${index}`, base);
  for (const ref of await listRefs(repo)) {
    if (ref.startsWith(BASE_REF_PREFIX) && Number(ref.slice(BASE_REF_PREFIX.length)) >= bases.length) await rm(join(repo, "refs", "heads", ref), { force: true });
  }
  return bases;
}
