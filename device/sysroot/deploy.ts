/**
 * `ostree admin deploy` that keeps what rpm-ostree keeps: the new default, the booted deployment
 * and one rollback. ostree decides what to prune from the deployment it thinks is booted; on a
 * sysroot it did not boot (an image being built, a test) it would drop the deployment we know
 * is running, so we deploy with --retain and prune by our own classification.
 */
import { runOstree } from "../../shared/ostree/exec.ts";
import { readDeployments, type Deployment, type SysrootFacts } from "./deployments.ts";

export interface DeployOptions extends SysrootFacts {
  osname: string;
  revision: string;
  /** `--stage`: finalized at shutdown by ostree, which prunes then (a booted system only). */
  stage?: boolean;
  /** Extra `ostree admin deploy` arguments (kernel arguments). */
  args?: string[];
  /** The deployments before this one, when the caller has them fresh: pruning then needs no `ostree admin status`. */
  before?: Deployment[];
}

export async function deployRetaining(options: DeployOptions): Promise<void> {
  const argv = ["admin", "deploy", `--sysroot=${options.sysroot}`, `--os=${options.osname}`, ...(options.args ?? [])];
  if (options.stage) {
    await runOstree([...argv, "--stage", options.revision]);
    return;
  }
  await runOstree([...argv, "--retain", options.revision]);
  // The new deployment is index 0; the others move down by one.
  await pruneDeployments(options, options.before ? [{ booted: false }, ...options.before] : undefined);
}

/** Undeploys everything but index 0, the booted deployment and the first one after it (highest index first). */
export async function pruneDeployments(facts: SysrootFacts, known?: Array<Pick<Deployment, "booted">>): Promise<void> {
  const deployments = known ?? (await readDeployments(facts));
  const booted = deployments.findIndex((d) => d.booted);
  const keep = new Set(booted < 0 ? [0, 1] : [0, booted, booted + 1]);
  const doomed = deployments.map((_, i) => i).filter((i) => !keep.has(i)).reverse();
  for (const index of doomed) await runOstree(["admin", "undeploy", `--sysroot=${facts.sysroot}`, String(index)]);
}
