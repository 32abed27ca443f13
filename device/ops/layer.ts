/**
 * `install`, `uninstall` and `override` as one operation on an agent (the running one through
 * its control socket, or one the CLI loads): the request is read from the default deployment's
 * commit, so several in a row accumulate in the pending deployment as with rpm-ostree; the new
 * request is built onto the same signed base and deployed. An empty request deploys the base.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, mkdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { AptOstreeError } from "../../shared/errors.ts";
import { runProgram } from "../../shared/process/run.ts";
import { readImageCommitInfo, type PackageEntry } from "../../shared/image/commit-metadata.ts";
import { emptyLayerRequest, isEmptyLayerRequest, readLayerInfo, type LayerOutcome, type LayerRequest, type LocalPackage } from "../../shared/image/layer-metadata.ts";
import type { Logger } from "../../shared/log.ts";
import { parseCommitObject, type CommitObject } from "../../shared/ostree/commit-object.ts";
import { readCommitObject } from "../../shared/ostree/repo.ts";
import type { AgentState } from "../agent/machine.ts";
import { isBusy } from "../agent/machine.ts";
import type { AgentSettings } from "../config/settings.ts";
import type { ServerAptSource } from "../layering/apt-sources.ts";
import { assembleLayer } from "../layering/assemble.ts";
import { repoUrl } from "../update/channel.ts";
import { syncBaseRefs } from "../layering/base-refs.ts";
import { commitLayer } from "../layering/commit.ts";
import * as edits from "../layering/request.ts";
import { deployRetaining } from "../sysroot/deploy.ts";
import { readDeployments, sysrootRepo } from "../sysroot/deployments.ts";

export interface LayerOpRequest {
  install?: string[];
  /** Paths of .deb files on this device. */
  installLocal?: string[];
  uninstall?: string[];
  uninstallAll?: boolean;
  overrideRemove?: string[];
  /** Paths of .deb files replacing base packages. */
  overrideReplace?: string[];
  overrideReset?: string[] | "all";
  dryRun?: boolean;
  idempotent?: boolean;
  allowInactive?: boolean;
  cacheOnly?: boolean;
}

export interface LayerOpResult {
  changed: boolean;
  base: string;
  request: LayerRequest;
  /** The deployed commit: the layered one, or the base for an empty request; null on a dry run or no change. */
  deployed: string | null;
  outcome: LayerOutcome | null;
  /** Packages of the new tree that the base does not have (with dependencies), for the message. */
  added: PackageEntry[];
}

export class LayerOpError extends AptOstreeError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** What the agent gives the operation: its state (to refuse while an update runs) and where to put things. */
export interface LayerContext {
  settings: AgentSettings;
  /** The agent's state now: read at the start and again right before deploying. */
  state: () => AgentState;
  log: Logger;
  /** Tell the agent the deployment list changed (it reconciles its own state). */
  deploymentsChanged: () => Promise<void>;
}

/** Largest .deb taken from a path: a layered package is an appliance's tool, not a disk image. */
const MAX_DEB_BYTES = 2 * 1024 * 1024 * 1024;

export function layeringDirs(settings: AgentSettings): { stateDir: string; localDir: string } {
  const stateDir = join(settings.stateDir, "layering");
  return { stateDir, localDir: join(stateDir, "local") };
}

/** The server's APT repository for layering: `<repo>/apt`, on the suite the image was composed from (null: the image does not trust one). */
export function layeringServerSource(settings: AgentSettings, repo = repoUrl(settings)): ServerAptSource | null {
  return settings.layeringSuite === null ? null : { url: `${repo.replace(/\/$/, "")}/apt`, suite: settings.layeringSuite, caFile: settings.caFile };
}

export async function layer(context: LayerContext, op: LayerOpRequest): Promise<LayerOpResult> {
  const { settings, log } = context;
  if (!settings.allowLayering) {
    throw new LayerOpError("E_LAYERING_FORBIDDEN", "package layering is forbidden on this device (allowLayering: false in its agent.yaml): its image stays as built; ask for the package in the image's recipe");
  }
  refuseWhileUpdating(context.state());
  const repo = sysrootRepo(settings.sysroot);
  const deployments = await readDeployments({ sysroot: settings.sysroot, rootDir: settings.rootDir });
  const current = deployments[0];
  if (!current) throw new LayerOpError("E_NO_DEPLOYMENT", "this sysroot has no deployment to layer onto");
  const currentCommit = await commitOf(repo, current.checksum);
  const currentLayer = readLayerInfo(currentCommit);
  const base = currentLayer?.base ?? current.checksum;
  const basePackages = new Map(readImageCommitInfo(currentLayer ? await commitOf(repo, base) : currentCommit, `base ${base.slice(0, 12)}`).packages.map((p) => [p.name, p]));

  const install = { idempotent: op.idempotent ?? false, allowInactive: op.allowInactive ?? false };
  let request: LayerRequest = currentLayer?.request ?? emptyLayerRequest();
  const apply = (edit: edits.RequestEdit) => (request = edit.request);
  const { stateDir, localDir } = layeringDirs(settings);
  if (op.overrideReset) apply(edits.overrideReset(request, op.overrideReset));
  if (op.overrideRemove?.length) apply(edits.overrideRemove(request, op.overrideRemove, basePackages));
  if (op.overrideReplace?.length) apply(edits.overrideReplace(request, await importDebs(op.overrideReplace, localDir), basePackages));
  if (op.uninstallAll) apply(edits.uninstallAll(request));
  if (op.uninstall?.length) apply(edits.uninstallPackages(request, op.uninstall, { idempotent: op.idempotent ?? false }));
  if (op.install?.length) apply(edits.installPackages(request, op.install, basePackages, install));
  if (op.installLocal?.length) apply(edits.installLocalPackages(request, await importDebs(op.installLocal, localDir), basePackages, install));

  const before = currentLayer?.request ?? emptyLayerRequest();
  const changed = JSON.stringify(before) !== JSON.stringify(request);
  if (!changed) return { changed: false, base, request, deployed: null, outcome: currentLayer?.outcome ?? null, added: [] };

  if (isEmptyLayerRequest(request)) {
    if (op.dryRun) return { changed, base, request, deployed: null, outcome: null, added: [] };
    await deploy(context, base, current.origin ?? (settings.ref || null));
    return { changed, base, request, deployed: base, outcome: null, added: [] };
  }
  const assembled = await assembleLayer({ repo, base, request, aptEtc: settings.layeringAptDir, serverSource: layeringServerSource(settings), stateDir, refresh: !(op.cacheOnly ?? false), log });
  try {
    const added = assembled.packages.filter((p) => basePackages.get(p.name)?.version !== p.version);
    if (op.dryRun) return { changed, base, request, deployed: null, outcome: assembled.outcome, added };
    const commit = await commitLayer({ repo, base, tree: assembled.tree, request, outcome: assembled.outcome, packages: assembled.packages });
    await deploy(context, commit, current.origin ?? (settings.ref || null));
    log.info({ event: "layering.deployed", base, commit, layered: assembled.outcome.layeredPackages }, `deployed ${commit.slice(0, 12)}: ${base.slice(0, 12)} + ${assembled.outcome.layeredPackages.join(", ") || "overrides"}`);
    return { changed, base, request, deployed: commit, outcome: assembled.outcome, added };
  } finally {
    await rm(assembled.workDir, { recursive: true, force: true });
  }
}

function refuseWhileUpdating(state: AgentState): void {
  if (isBusy(state)) {
    throw new LayerOpError("E_BUSY", `an update to ${state.target.version} is ${state.name}: layering waits until it is done (or cancelled), so the two never race; run it again then`);
  }
}

async function deploy(context: LayerContext, revision: string, originRefspec: string | null): Promise<void> {
  const { settings } = context;
  // An update the server sent while the layer was built waits for this run (Agent.runLayering):
  // it goes first, and this layering is not deployed over it.
  refuseWhileUpdating(context.state());
  // The base first: the deploy's prune must not take the base of the deployment it replaces.
  await syncBaseRefs(sysrootRepo(settings.sysroot), await readDeployments({ sysroot: settings.sysroot, rootDir: settings.rootDir }));
  await deployRetaining({ sysroot: settings.sysroot, rootDir: settings.rootDir, osname: settings.osname, revision, stage: settings.stage, ...(originRefspec ? { originRefspec } : {}) });
  await syncBaseRefs(sysrootRepo(settings.sysroot), await readDeployments({ sysroot: settings.sysroot, rootDir: settings.rootDir }));
  await context.deploymentsChanged();
}

async function commitOf(repo: string, checksum: string): Promise<CommitObject> {
  return parseCommitObject(await readCommitObject(repo, checksum));
}

/** Copies each .deb into the layering state by its sha256 (updates apply it again) and reads its name, version and architecture. */
async function importDebs(paths: string[], localDir: string): Promise<LocalPackage[]> {
  if (paths.length > edits.MAX_REQUEST_ENTRIES) throw new LayerOpError("E_LAYER_REQUEST", `at most ${edits.MAX_REQUEST_ENTRIES} packages at once`);
  await mkdir(localDir, { recursive: true, mode: 0o700 });
  const debs: LocalPackage[] = [];
  for (const path of paths) {
    const info = await stat(path).catch(() => null);
    if (!info?.isFile()) throw new LayerOpError("E_LAYER_REQUEST", `${path}: not a readable .deb file`);
    if (info.size > MAX_DEB_BYTES) throw new LayerOpError("E_LAYER_REQUEST", `${path}: ${info.size} bytes is more than a layered package may have (${MAX_DEB_BYTES})`);
    // Copied first; then read and hashed (as a stream: a big package never sits in the agent's
    // memory) from the copy, so what is kept is what was checked.
    const copy = join(localDir, `.import-${process.pid}-${debs.length}.deb`);
    try {
      await copyFile(path, copy);
      const fields = await runProgram("dpkg-deb", ["--field", copy, "Package", "Version", "Architecture"]);
      const values = new Map([...fields.stdout.matchAll(/^(Package|Version|Architecture): (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
      if (fields.exitCode !== 0 || values.size !== 3) throw new LayerOpError("E_LAYER_REQUEST", `${path}: not a Debian package (${fields.stderr.trim().split("\n")[0] || "no Package, Version and Architecture"})`);
      const hash = createHash("sha256");
      for await (const chunk of createReadStream(copy)) hash.update(chunk as Buffer);
      const sha256 = hash.digest("hex");
      await rename(copy, join(localDir, `${sha256}.deb`));
      debs.push({ name: values.get("Package")!, version: values.get("Version")!, architecture: values.get("Architecture")!, sha256 });
    } finally {
      await rm(copy, { force: true });
    }
  }
  return debs;
}
