/**
 * `ostree admin deploy` that keeps what rpm-ostree keeps: the new default, the booted deployment
 * and one rollback. ostree decides what to prune from the deployment it thinks is booted; on a
 * sysroot it did not boot (an image being built, a test) it would drop the deployment we know
 * is running, so we deploy with --retain and prune by our own classification.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AptOstreeError } from "../../shared/errors.ts";
import { runOstree } from "../../shared/ostree/exec.ts";
import { runProgram } from "../../shared/process/run.ts";
import { prunableIndices, readDeployments, type Deployment, type SysrootFacts } from "./deployments.ts";

export interface DeployOptions extends SysrootFacts {
  osname: string;
  revision: string;
  /** `--stage`: finalized at shutdown by ostree, which prunes then (a booted system only). */
  stage?: boolean;
  /** Extra `ostree admin deploy` arguments (kernel arguments). */
  args?: string[];
  /** The deployments before this one, when the caller has them fresh: pruning then needs no `ostree admin status`. */
  before?: Deployment[];
  /**
   * The ref the deployment follows, when `revision` is a commit (a package layer): without it
   * ostree records the checksum as the origin, and `upgrade` would have no ref to follow.
   */
  originRefspec?: string;
}

export async function deployRetaining(options: DeployOptions): Promise<void> {
  const argv = ["admin", "deploy", `--sysroot=${options.sysroot}`, `--os=${options.osname}`, ...(options.args ?? [])];
  let originDir: string | null = null;
  if (options.originRefspec) {
    if (/[\r\n]/.test(options.originRefspec)) throw new AptOstreeError("E_BAD_REF", "a ref cannot contain a line break");
    originDir = await mkdtemp(join(tmpdir(), "apt-ostree-origin-"));
    await writeFile(join(originDir, "origin"), `[origin]\nrefspec=${options.originRefspec}\n`);
    argv.push(`--origin-file=${join(originDir, "origin")}`);
  }
  try {
    if (options.stage) {
      await runOstree([...argv, "--stage", options.revision]);
      await startFinalizeUnit();
      return;
    }
    await runOstree([...argv, "--retain", options.revision]);
  } finally {
    if (originDir) await rm(originDir, { recursive: true, force: true });
  }
  // The new deployment is index 0; the others move down by one.
  await pruneDeployments(options, options.before ? [{ booted: false }, ...options.before] : undefined);
}

/** Undeploys everything but index 0, the booted deployment and the first one after it (highest index first). */
export async function pruneDeployments(facts: SysrootFacts, known?: Array<Pick<Deployment, "booted">>): Promise<void> {
  for (const index of prunableIndices(known ?? (await readDeployments(facts)))) await runOstree(["admin", "undeploy", `--sysroot=${facts.sysroot}`, String(index)]);
}

/** ostree's unit whose stop, at shutdown, writes the staged deployment into the bootloader. */
export const FINALIZE_UNIT = "ostree-finalize-staged.service";

/**
 * Starts the finalize unit and waits for it. Debian's ostree (2022.7) leaves that to a .path
 * unit, asynchronously: a reboot that follows the staging within a second or so can isolate to
 * reboot.target before the unit started, and the staged deployment is then silently dropped.
 * Seen in our demo: one update in four rebooted into the old deployment, GRUB listing only it.
 * Upstream ostree now starts the unit from the staging itself (ostreedev/ostree#3389, 2025).
 */
async function startFinalizeUnit(): Promise<void> {
  const result = await runProgram("systemctl", ["start", FINALIZE_UNIT]).catch((error: Error) => ({ exitCode: null, stderr: error.message }));
  if (result.exitCode !== 0) {
    throw new AptOstreeError("E_FINALIZE_UNIT", `staged, but 'systemctl start ${FINALIZE_UNIT}' failed (${result.stderr.trim() || `exit ${result.exitCode}`}): the staged deployment would not be written at shutdown`);
  }
}
