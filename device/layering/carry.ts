/**
 * Updates keep the layering: a new base from the server gets the admin's request built onto it
 * before it is deployed (rpm-ostree's upgrade does the same). The request is the default
 * deployment's, so an install still pending when the update comes is carried too.
 */
import { rm } from "node:fs/promises";
import type { Logger } from "pino";
import { isEmptyLayerRequest, layeredNames, readLayerInfo, type LayerRequest } from "../../shared/image/layer-metadata.ts";
import { parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { readCommitObject } from "../../shared/ostree/repo.ts";
import type { Deployment } from "../sysroot/deployments.ts";
import type { ServerAptSource } from "./apt-sources.ts";
import { assembleLayer } from "./assemble.ts";
import { commitLayer } from "./commit.ts";

export async function requestToCarry(repo: string, deployments: Deployment[]): Promise<LayerRequest | null> {
  const current = deployments[0];
  if (!current || current.base === current.checksum) return null;
  const info = readLayerInfo(parseCommitObject(await readCommitObject(repo, current.checksum)));
  return info && !isEmptyLayerRequest(info.request) ? info.request : null;
}

export interface CarryOptions {
  repo: string;
  base: string;
  request: LayerRequest;
  aptEtc: string;
  serverSource?: ServerAptSource | null;
  stateDir: string;
  log: Logger;
  signal?: AbortSignal;
}

/** Builds and commits the request on the new base; returns the layered commit to deploy and what it layered. */
export async function carryLayer(options: CarryOptions): Promise<{ commit: string; layered: NonNullable<Deployment["layered"]> }> {
  const assembled = await assembleLayer({ ...options, refresh: true });
  try {
    const commit = await commitLayer({ repo: options.repo, base: options.base, tree: assembled.tree, request: options.request, outcome: assembled.outcome, packages: assembled.packages, ...(options.signal ? { signal: options.signal } : {}) });
    return { commit, layered: layeredNames(assembled.outcome) };
  } finally {
    await rm(assembled.workDir, { recursive: true, force: true });
  }
}
