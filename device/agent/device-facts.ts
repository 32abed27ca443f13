/**
 * What the agent reads about the device: its deployments (cached between changes: progress
 * reports must not run `ostree admin status`), the booted commit's sequence, and the boot id.
 */
import { META } from "../../shared/image/commit-metadata.ts";
import { readBootId } from "../../shared/process-alive.ts";
import { metadataString, parseCommitObject } from "../../shared/ostree/commit-object.ts";
import { readCommitObject } from "../../shared/ostree/repo.ts";
import type { AgentSettings } from "../config/settings.ts";
import { readDeployments, sysrootRepo, type Deployment } from "../sysroot/deployments.ts";

export class DeviceFacts {
  private cache: Promise<Deployment[]> | null = null;

  constructor(private readonly settings: Pick<AgentSettings, "sysroot" | "rootDir" | "bootIdFile">) {}

  deployments(): Promise<Deployment[]> {
    this.cache ??= readDeployments({ sysroot: this.settings.sysroot, rootDir: this.settings.rootDir }).catch((error: unknown) => {
      this.cache = null;
      throw error;
    });
    return this.cache;
  }

  /** After the agent deployed and knows the new list without asking ostree (see deploymentsAfterDeploy). */
  assume(deployments: Deployment[]): void {
    this.cache = Promise.resolve(deployments);
  }

  /** After the agent or the CLI changed the deployment list. */
  forget(): void {
    this.cache = null;
  }

  async booted(): Promise<Deployment | null> {
    return (await this.deployments()).find((d) => d.booted) ?? null;
  }

  /** `apt-ostree.sequence` of a commit in the sysroot's repo (what anti-rollback compares). */
  async sequenceOf(commit: string): Promise<number | undefined> {
    const bytes = await readCommitObject(sysrootRepo(this.settings.sysroot), commit).catch(() => null);
    const value = bytes ? metadataString(parseCommitObject(bytes), META.sequence) : undefined;
    return value === undefined ? undefined : Number(value);
  }

  /** Changes on every boot: tells a restart from a reboot. */
  async bootId(): Promise<string> {
    return readBootId(this.settings.bootIdFile);
  }
}
