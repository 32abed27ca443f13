/** `ostree admin` and the pulls a sysroot needs, always with an explicit --sysroot or --repo. */
import { runOstree } from "./exec.ts";

export async function adminInitFs(sysroot: string): Promise<void> {
  await runOstree(["admin", "init-fs", "--modern", sysroot]);
}

export async function adminOsInit(sysroot: string, osname: string): Promise<void> {
  await runOstree(["admin", "os-init", `--sysroot=${sysroot}`, osname]);
}

/** Copies a commit and its objects from another local repo (checksums verified: `--untrusted`). */
export async function pullLocal(repo: string, sourceRepo: string, revision: string): Promise<void> {
  await runOstree(["pull-local", "--untrusted", `--repo=${repo}`, sourceRepo, revision]);
}

export interface AdminDeployOptions {
  sysroot: string;
  osname: string;
  revision: string;
  kernelArgs?: string[];
  /** `--stage`: finalize at shutdown; needs a booted OSTree system. */
  stage?: boolean;
}

export async function adminDeploy(options: AdminDeployOptions): Promise<void> {
  const argv = ["admin", "deploy", `--sysroot=${options.sysroot}`, `--os=${options.osname}`];
  for (const karg of options.kernelArgs ?? []) argv.push(`--karg=${karg}`);
  if (options.stage) argv.push("--stage");
  argv.push(options.revision);
  await runOstree(argv);
}
