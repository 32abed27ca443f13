/** /api/v1/rollouts: create, list, show (with per-wave progress), pause, resume, abort. */
import { z } from "zod";
import { NAME_PATTERN } from "../../../shared/wire/topics.ts";
import { CHANNEL_PATTERN, REF_PATTERN } from "../../../shared/wire/manifest.ts";
import { parseDuration } from "../../../shared/duration.ts";
import { RolloutError, type RolloutEngine } from "../../fleet/rollouts.ts";
import type { FleetStore, RolloutRecord } from "../../fleet/store.ts";
import { parseWaves, type RolloutDeviceStatus } from "../../fleet/waves.ts";
import { HttpError } from "../http-error.ts";

export const CreateRolloutSchema = z
  .object({
    ref: z.string().max(255).regex(REF_PATTERN, "is not an OSTree ref"),
    channel: z.string().regex(CHANNEL_PATTERN, "is not a channel name (lowercase letters, digits, '.', '_', '-')").default("stable"),
    version: z.string().min(1).max(256).optional(),
    select: z
      .object({ groups: z.array(z.string().regex(NAME_PATTERN)).default([]), tags: z.array(z.string()).default([]), devices: z.array(z.string().regex(NAME_PATTERN)).default([]) })
      .strict(),
    waves: z.string().default("100%"),
    waveDelay: z.string().default("10m"),
    waveTimeout: z.string().default("30m"),
    maxFailures: z.string().regex(/^\d+(\.\d+)?%?$/, "must be a percentage like 5%").default("5%"),
  })
  .strict();

export async function createRollout(engine: RolloutEngine, body: unknown): Promise<RolloutRecord> {
  const parsed = CreateRolloutSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new HttpError(400, "E_BAD_ROLLOUT", `${issue.path.join(".") || "body"}: ${issue.code === "unrecognized_keys" ? `unknown field ${issue.keys.join(", ")}` : issue.message}`);
  }
  const input = parsed.data;
  if (input.select.groups.length + input.select.tags.length + input.select.devices.length === 0) {
    throw new HttpError(400, "E_BAD_ROLLOUT", "select: name at least one group, tag or device");
  }
  let plan;
  try {
    plan = {
      waves: parseWaves(input.waves),
      waveDelaySeconds: durationField("waveDelay", input.waveDelay),
      waveTimeoutSeconds: durationField("waveTimeout", input.waveTimeout),
      maxFailuresPercent: Number(input.maxFailures.replace("%", "")),
    };
  } catch (error) {
    throw new HttpError(400, "E_BAD_ROLLOUT", (error as Error).message);
  }
  return withRolloutErrors(() => engine.create({ ref: input.ref, channel: input.channel, version: input.version, selector: input.select, plan }));
}

function durationField(field: string, text: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new RangeError(`${field}: ${(error as Error).message}`);
  }
}

export async function describeRollout(store: FleetStore, rollout: RolloutRecord) {
  const members = await store.rolloutDevices(rollout.id);
  const waves = rollout.plan.waves.map((percent, wave) => {
    const inWave = members.filter((m) => m.wave === wave);
    const count = (statuses: RolloutDeviceStatus[]) => inWave.filter((m) => statuses.includes(m.status)).length;
    return { wave: wave + 1, percent, devices: inWave.length, pending: count(["pending"]), inProgress: count(["sent", "in-progress"]), healthy: count(["healthy"]), failed: count(["failed"]), rolledBack: count(["rolled-back"]) };
  });
  return { ...rollout, waves, devices: members };
}

export async function withRolloutErrors<T>(action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof RolloutError) throw new HttpError(error.status, error.code, error.message);
    throw error;
  }
}
