/**
 * Cases where the hostile mirror spoils a delta file of a valid, signed v3 update (mutated,
 * endless, oversized, stalled, reset, an error status, a resume answered at the wrong offset):
 * the first attempt must be refused with the code its spoiling calls for, before ostree sees the
 * file; then the update is ended (cancelled if a retry is pending, then failed for good with every
 * file 404) so the device checks can hold the download dir to where it started. A retry is an
 * attempt the update spent, or (network trouble, a stall, a 5xx) a wait that spends none.
 */
import { signCommand } from "../../../shared/wire/command.ts";
import type { Prng } from "../prng.ts";
import { FILE_MODES, type FileMode, type FileRule } from "./mirror.ts";
import { Finding } from "./in-process.ts";
import { downloadCode, nextCommand, send, type ProcessContext } from "./process-context.ts";

/** What each way of spoiling a delta file must be refused as. */
const DUE: Record<FileMode, string[]> = {
  ok: [], "wrong-range": ["E_DOWNLOAD_BAD_RANGE"],
  mutated: ["E_DELTA_FILE_MISMATCH", "E_DOWNLOAD_TOO_LARGE"], "same-size": ["E_DELTA_FILE_MISMATCH"],
  endless: ["E_DOWNLOAD_TOO_LARGE"], "oversized-length": ["E_DOWNLOAD_TOO_LARGE"], "longer-chunked": ["E_DOWNLOAD_TOO_LARGE"],
  "short-close": ["E_DOWNLOAD_NETWORK"], "reset-half": ["E_DOWNLOAD_NETWORK"], "stall-headers": ["E_DOWNLOAD_STALLED"], "stall-half": ["E_DOWNLOAD_STALLED"],
  status: ["E_DOWNLOAD_HTTP"],
};

/** Sends a pinned command for v3 and waits for its first attempt to fail; returns the refusal's code and whether a retry is pending. */
async function firstFailure(ctx: ProcessContext): Promise<{ code: string; retrying: boolean; message: string }> {
  const { device } = ctx;
  const command = nextCommand(ctx, device.signedV3);
  const mark = device.mark();
  send(ctx, signCommand(command, [ctx.pinned]));
  const seen = await device.waitFor(async () => {
    const retry = device.since(mark, (e) => e.event === "agent.note" && /update attempt \d+ failed|update \S+ waits \(/.test(String(e.msg))).at(-1);
    if (retry) return { retrying: true, message: String(retry.msg) };
    const record = await device.record();
    if (record?.state.name === "failed" && record.state.target.command === command.id) return { retrying: false, message: record.state.error };
    if (record?.state.name === "staged" || record?.state.name === "rebooting") return { retrying: false, message: `staged: ${record.state.name}` };
    return null;
  }, 20_000, `the first attempt of ${command.id} to fail`);
  return { code: downloadCode(seen.message), ...seen };
}

/**
 * Ends an update the case left downloading (a retry pending): cancels it, then sends v3 again
 * with every file answered 404, so it fails for good (which discards what was downloaded).
 */
async function conclude(ctx: ProcessContext, retrying: boolean): Promise<void> {
  const { device } = ctx;
  if (retrying) {
    const answer = await device.ask({ op: "cancel" });
    if (!answer.ok) throw new Error(`cancel failed: ${answer.error}`);
    await checkKept(ctx);
  }
  device.mirror.reset("404");
  const again = await firstFailure(ctx);
  if (again.retrying || again.code !== "E_DOWNLOAD_HTTP") throw new Finding(`a v3 update with every file 404 ended as ${again.message}`, "");
}

/** What a download the agent may resume can keep: no file over its signed size, nothing refused. */
async function checkKept(ctx: ProcessContext): Promise<void> {
  const sizes = new Map(ctx.device.signedV3.manifest.deltas.flatMap((d) => d.files.map((f) => [f.path, f.size] as const)));
  for (const [path, size] of Object.entries((await ctx.device.snapshot()).downloads)) {
    const signed = sizes.get(path.replace(/\.part$/, ""));
    if (signed === undefined || size > signed) throw new Finding(`the download dir keeps ${path} (${size} bytes; signed ${signed ?? "nothing"})`, "");
  }
}

export async function spoiledDeltaFile(prng: Prng, ctx: ProcessContext): Promise<string> {
  const { device } = ctx;
  device.mirror.reset("ok");
  const target = prng.pick(device.deltaFiles);
  const mode = prng.pick(FILE_MODES);
  const rule: FileRule = { mode };
  if (mode === "mutated") rule.bytes = prng.mutate(target.bytes);
  if (mode === "same-size") rule.bytes = flipped(target.bytes, prng.int(target.bytes.length));
  if (mode === "status") rule.status = prng.pick([403, 404, 410, 500, 503]);
  // A mutation that changed nothing is a flipped byte instead.
  if (rule.bytes?.equals(target.bytes)) Object.assign(rule, { mode: "same-size", bytes: flipped(target.bytes, 0) });
  device.mirror.rules.set(target.entry.path, rule);
  const failure = await firstFailure(ctx);
  if (!DUE[rule.mode].includes(failure.code)) throw new Finding(`a delta file served ${rule.mode} was refused as ${failure.code}: ${failure.message.slice(0, 300)}`, rule.bytes?.toString("hex").slice(0, 4000) ?? "");
  await conclude(ctx, failure.retrying);
  return `agent:delta:${failure.code}`;
}

function flipped(bytes: Buffer, at: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] = copy[at]! ^ 0x5a;
  return copy;
}

/** A part stalls half-way (kept to resume), then the resume is answered at the wrong offset. */
export async function wrongRangeResume(prng: Prng, ctx: ProcessContext): Promise<string> {
  const { device } = ctx;
  device.mirror.reset("ok");
  const target = prng.pick(device.deltaFiles);
  device.mirror.rules.set(target.entry.path, { mode: "stall-half" });
  const stalled = await firstFailure(ctx);
  if (stalled.code !== "E_DOWNLOAD_STALLED" || !stalled.retrying) throw new Finding(`a stalled part ended as ${stalled.message}`, "");
  await device.ask({ op: "cancel" });
  device.mirror.reset("ok");
  device.mirror.rules.set(target.entry.path, { mode: "wrong-range" });
  const resumed = await firstFailure(ctx);
  const part = device.mirror.requests.filter((r) => r.path === target.entry.path).at(-1);
  if (part?.range === undefined) return "agent:delta:resume-not-tried";
  if (resumed.code !== "E_DOWNLOAD_BAD_RANGE") throw new Finding(`a 206 at the wrong offset was refused as ${resumed.code}: ${resumed.message}`, "");
  await conclude(ctx, resumed.retrying);
  return `agent:delta:${resumed.code}`;
}

/**
 * Kept: a cancel during a retry's 10 s backoff left the retry's timer running, and the retry
 * then downloaded, applied and deployed the update while the agent said "idle" (a server's
 * abort of a rollout goes the same way). The mirror serves the real files once cancelled.
 */
export async function cancelInBackoff(prng: Prng, ctx: ProcessContext): Promise<string> {
  const { device } = ctx;
  device.mirror.reset("ok");
  device.mirror.rules.set(prng.pick(device.deltaFiles).entry.path, { mode: "stall-half" });
  const stalled = await firstFailure(ctx);
  if (stalled.code !== "E_DOWNLOAD_STALLED" || !stalled.retrying) throw new Finding(`a stalled part ended as ${stalled.message}`, "");
  const answer = await device.ask({ op: "cancel" });
  if (!answer.ok || !(answer.result as { cancelled: boolean }).cancelled) throw new Finding(`cancel in the backoff answered ${JSON.stringify(answer)}`, "");
  device.mirror.reset("ok");
  const mark = device.mark();
  // The retry was due 10 s after the stall.
  await new Promise((resolve) => setTimeout(resolve, 11_000));
  const late = device.since(mark, (e) => e.event === "agent.event.error" || e.event === "stage.deployed");
  if (late.length > 0) throw new Finding(`the cancelled update went on: ${late.map((e) => e.msg).join("; ")}`, "");
  await conclude(ctx, false);
  return "agent:delta:cancelled-in-backoff";
}
