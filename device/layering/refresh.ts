/**
 * `apt-ostree refresh-md`: fetch the package indices layering resolves with, as rpm-ostree's
 * refresh-md fetches repo metadata. apt-get runs chrooted into the booted deployment with the
 * layering configuration bound in, so the indices land where `install --cache-only` reads them
 * and nothing of the running system is written (no package caches: they would go to its /var).
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { ChrootCommandError, runInChroot } from "../../shared/chroot.ts";
import { prepareAptEtc, type ServerAptSource } from "./apt-sources.ts";
import { APT_ETC_IN_ROOT, APT_OPTIONS, indexFetchFailures, aptBinds, LayeringError } from "./assemble.ts";

export async function refreshIndices(options: { rootDir: string; aptEtc: string; stateDir: string; serverSource?: ServerAptSource | null; signal?: AbortSignal }): Promise<{ fetched: number; skipped: string[]; serverSource: "added" | "no-keyring" | "none" }> {
  for (const dir of ["lists/partial", "archives/partial", "local"]) await mkdir(join(options.stateDir, dir), { recursive: true });
  const aptEtc = await prepareAptEtc({ aptEtc: options.aptEtc, stateDir: options.stateDir, serverSource: options.serverSource ?? null, chrootRoot: options.rootDir, etcInRoot: APT_ETC_IN_ROOT });
  try {
    const output = await runInChroot(options.rootDir, ["apt-get", ...APT_OPTIONS, ...aptEtc.aptOptions, "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=", "update"], {
      what: "fetching package indices (apt-get update)",
      binds: aptBinds({ aptEtc: aptEtc.dir, stateDir: options.stateDir }),
      env: { DEBIAN_FRONTEND: "noninteractive" },
      output: "all",
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const failures = indexFetchFailures(output);
    if (failures.length > 0) throw new LayeringError(`fetching package indices (apt-get update) failed:\n${failures.join("\n")}`);
    return { fetched: output.split("\n").filter((line) => line.startsWith("Get:")).length, skipped: aptEtc.skipped, serverSource: aptEtc.serverSource };
  } catch (error) {
    if (error instanceof ChrootCommandError) throw new LayeringError(`${error.what} failed (exit code ${error.exitCode ?? "?"}):\n${error.output.trim().split("\n").filter((l) => /^(E|W|Err):/.test(l)).slice(-10).join("\n")}`, { cause: error });
    throw error;
  } finally {
    await aptEtc.remove();
  }
}
