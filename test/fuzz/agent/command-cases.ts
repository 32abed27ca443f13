/**
 * Cases that reach the agent process as documents: a command for v3 whose bytes, structure or
 * signatures were spoiled, or one signed for another device (through the broker); a pinned
 * command carrying a manifest the device must refuse; the channel manifest spoiled by the mirror
 * (`upgrade --check` on the control socket). Each returns the refusal, named by error code.
 */
import { signCommand } from "../../../shared/wire/command.ts";
import type { Manifest } from "../../../shared/wire/manifest.ts";
import { manifestPath } from "../../../shared/wire/manifest.ts";
import { canonicalJson } from "../../../shared/wire/canonical-json.ts";
import { REF } from "../../helpers/agent-fixture.ts";
import type { Prng } from "../prng.ts";
import { mutateSigned, refusableManifests, signedManifestOf } from "./documents.ts";
import { emitJson, mutateStructure, STRUCTURAL_MUTATIONS } from "./json-mutations.ts";
import type { FileRule } from "./mirror.ts";
import { Finding } from "./in-process.ts";
import { commandOutcome, nextCommand, send, type ProcessContext } from "./process-context.ts";

/** A command for v3 whose bytes, structure or signatures were spoiled; sent through the broker. */
export async function mutatedCommand(prng: Prng, ctx: ProcessContext): Promise<string> {
  ctx.device.mirror.reset("404");
  if (prng.chance(0.1)) {
    // Signed by the server's key, for another device: a copy on this device's topic.
    const command = nextCommand(ctx, ctx.device.signedV3, "dev-2");
    const mark = ctx.device.mark();
    send(ctx, signCommand(command, [ctx.pinned]));
    const outcome = await commandOutcome(ctx, mark, command.id);
    if (!outcome.startsWith("agent:command:")) throw new Finding(`a command for another device ended as ${outcome}`, "");
    return outcome;
  }
  const command = nextCommand(ctx, ctx.device.signedV3);
  const mutant = mutateSigned(prng, "command", command, ctx, prng.pick(["bytes", "structure", "signatures", "resign-stranger"] as const));
  const mark = ctx.device.mark();
  send(ctx, mutant.how === "bytes" ? Buffer.from(mutant.text, "latin1") : mutant.text);
  // A mutant the agent takes must be the command as signed (the in-process layer holds
  // verifyCommand to that); taken, it fails on the mirror's 404s and changes nothing.
  return commandOutcome(ctx, mark, command.id);
}

/** A pinned command carrying a manifest the device must refuse. */
export async function refusedManifest(prng: Prng, ctx: ProcessContext): Promise<string> {
  const { device } = ctx;
  device.mirror.reset("404");
  const base = device.signedV3.manifest;
  let manifest: unknown;
  let due: string | null = null;
  let equivalent = false;
  if (prng.chance(0.5)) {
    const refusable = prng.pick(refusableManifests(new Date(), 2, REF));
    const spoiled: Manifest = refusable.code === "E_MANIFEST_ROLLBACK" ? { ...base, commit: device.fixture.commits.get(1)!, version: "1", sequence: 1, deltas: [] } : refusable.manifest(base);
    manifest = signedManifestOf(spoiled, refusable.code === "E_MANIFEST_UNKNOWN_KEY" ? ctx.stranger : ctx.pinned);
    due = refusable.code;
  } else {
    const mutant = mutateSigned(prng, "manifest", base, ctx, prng.pick(["structure", "signatures", "resign-stranger"] as const));
    try {
      manifest = JSON.parse(mutant.text);
    } catch {
      return "agent:skipped-unparseable";
    }
    try {
      // What the agent's parse makes of it: duplicate keys keep the last, an own `__proto__` key is
      // dropped (zod's record assigns it). The manifest as the pinned key signed it may be taken,
      // whatever other signatures come with it.
      const seen = JSON.parse(mutant.text, (key, value) => (key === "__proto__" ? undefined : value)) as { manifest?: unknown };
      equivalent = mutant.pinnedSigned.has(canonicalJson(seen?.manifest ?? null));
    } catch {
      // Nesting too deep for canonical JSON, or 1e999: no server could sign it into a command.
      return "agent:skipped-unsignable";
    }
  }
  const command = nextCommand(ctx, manifest);
  const mark = device.mark();
  send(ctx, signCommand(command, [ctx.pinned]));
  const outcome = await commandOutcome(ctx, mark, command.id);
  if (outcome.startsWith("agent:taken") && !equivalent) throw new Finding(`the agent took a manifest it must refuse (${outcome})`, JSON.stringify(manifest).slice(0, 2000));
  if (due && outcome !== `agent:manifest:${due}`) throw new Finding(`a manifest due ${due} was refused as ${outcome}`, JSON.stringify(manifest).slice(0, 2000));
  return outcome;
}

/** The channel manifest spoiled by the mirror; `apt-ostree upgrade --check` through the control socket. */
export async function spoiledChannel(prng: Prng, ctx: ProcessContext): Promise<string> {
  const { device } = ctx;
  device.mirror.reset("404");
  const path = manifestPath("stable", REF);
  const real = (await device.mirror.real(path))!;
  const how = prng.pick(["bytes", "structure", "endless", "oversized", "status", "random"] as const);
  const rule: FileRule = {
    bytes: () => ({ mode: "mutated" as const, bytes: prng.mutate(real) }),
    structure: () => ({ mode: "mutated" as const, bytes: Buffer.from(emitJson(mutateStructure(prng, JSON.parse(real.toString("utf8")), prng.pick(STRUCTURAL_MUTATIONS)))) }),
    endless: () => ({ mode: "endless" as const }),
    oversized: () => ({ mode: "mutated" as const, chunked: prng.chance(0.5), bytes: Buffer.from(`{"manifest":{"pad":"${"x".repeat(1_100_000)}"},"signatures":[]}`) }),
    status: () => ({ mode: "status" as const, status: prng.pick([403, 404, 500, 302]) }),
    random: () => ({ mode: "mutated" as const, bytes: prng.bytes(prng.int(4096)) }),
  }[how]();
  device.mirror.rules.set(path, rule);
  const answer = await device.ask({ op: "upgrade", check: true }, 40_000);
  if (answer.ok) {
    const result = answer.result as { manifest: { commit: string } };
    if (result.manifest.commit !== device.signedV3.manifest.commit) throw new Finding(`upgrade --check took a channel manifest naming ${result.manifest.commit}`, rule.bytes?.toString("hex").slice(0, 4000) ?? how);
    return "agent:channel:accepted";
  }
  if (!/^E_(CHANNEL|MANIFEST)_/.test(answer.code)) throw new Finding(`upgrade --check refused a spoiled channel manifest (${how}) with ${answer.code}: ${answer.error.slice(0, 200)}`, rule.bytes?.toString("hex").slice(0, 4000) ?? how);
  return `agent:channel:${answer.code}`;
}
