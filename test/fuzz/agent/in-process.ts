/**
 * The agent's checks that need no process, many cases a second: `verifyCommand`,
 * `verifySignedManifest` (on text, and on the parsed object a channel fetch or a command hands
 * it), a delta file's size and sha256 against its signed entry (the agent parses nothing of a
 * superblock: ostree's `apply-offline` does, so a file must be refused before it gets there),
 * and the MQTT packet reader fed what a hostile broker might send. Each case either verifies,
 * and then only what a pinned key signed, or throws the module's typed error; anything else
 * (a TypeError, a RangeError, a stack overflow, a case that takes seconds) is a finding.
 */
import { anyOf } from "../../../shared/trust/signers.ts";
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AptOstreeError } from "../../../shared/errors.ts";
import { canonicalJson } from "../../../shared/wire/canonical-json.ts";
import { CommandRejectedError, signCommand, verifyCommand } from "../../../shared/wire/command.ts";
import { checkDeltaFileDigest, checkDeltaFileSize, DeltaFileMismatchError, verifyDeltaFile } from "../../../shared/verify/delta-file.ts";
import { ManifestRejectedError, verifySignedManifest, type ManifestExpectations } from "../../../shared/verify/manifest.ts";
import type { DeltaFile } from "../../../shared/wire/manifest.ts";
import { generateKeyPair, type Ed25519KeyPair } from "../../../shared/sign/ed25519.ts";
import { encodePuback, MqttProtocolError, PacketReader } from "../../../device/mqtt/packets.ts";
import type { Prng } from "../prng.ts";
import { MUTATION_FAMILIES, mutateSigned, REF, refusableManifests, signedManifestOf, validCommands, validManifest, type Mutant } from "./documents.ts";
import { brokerStream } from "./broker-packets.ts";

/** A case longer than this is a finding: a hostile input must not cost the agent seconds. */
export const SLOW_CASE_MS = 1000;
/** The agent's limit on a broker's packets (device/mqtt/packets.ts DEFAULT_MAX_PACKET_BYTES). */
const MAX_PACKET_BYTES = 64 * 1024 + 1024;

/** Something the checks must never do, with the input that made them do it. */
export class Finding extends Error {
  constructor(what: string, readonly input: string) {
    super(what);
  }
}

export interface InProcessContext {
  pinned: Ed25519KeyPair;
  stranger: Ed25519KeyPair;
  now: Date;
  expect: ManifestExpectations;
  /** Real delta files (superblock, parts) when a device was set up; else pseudo-random ones. */
  deltaFiles: Array<{ entry: DeltaFile; bytes: Buffer }>;
  scratchDir: string;
}

export function inProcessContext(scratchDir: string, deltaFiles: InProcessContext["deltaFiles"]): InProcessContext {
  const pinned = generateKeyPair();
  const now = new Date("2031-05-01T12:00:00Z");
  return { pinned, stranger: generateKeyPair(), now, expect: { signers: anyOf([pinned.publicKey]), now, architecture: "amd64", ref: REF, bootedSequence: 5 }, deltaFiles, scratchDir };
}

/** A short, stable name for why a command was refused (all refusals share E_COMMAND_REJECTED). */
export function commandRefusalKind(message: string): string {
  const kinds: Array<[RegExp, string]> = [
    [/deeper than/, "too-deep"], [/bytes; the limit/, "too-large"], [/more than \d+ values/, "too-many-values"], [/not JSON/, "not-json"], [/out of range/, "non-finite-number"],
    [/malformed command envelope/, "envelope"], [/unknown keys?/, "unknown-key"], [/does not verify/, "bad-signature"], [/malformed command:/, "schema"],
  ];
  return kinds.find(([pattern]) => pattern.test(message))?.[1] ?? "other";
}

function hexOf(bytes: Buffer | string): string {
  const buffer = typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes;
  return buffer.length > 4096 ? `${buffer.subarray(0, 4096).toString("hex")}… (${buffer.length} bytes)` : buffer.toString("hex");
}

/** Runs `check`, timing it; an error that is not `typed` becomes a Finding. */
function guarded<T>(layer: string, input: Buffer | string, typed: (error: unknown) => string | null, check: () => T): { value?: T; refusal?: string } {
  const started = performance.now();
  try {
    return { value: check() };
  } catch (error) {
    const refusal = typed(error);
    if (refusal === null) throw new Finding(`${layer} threw ${(error as Error)?.name ?? typeof error} instead of its typed error: ${String((error as Error)?.message ?? error).slice(0, 200)}`, hexOf(input));
    return { refusal };
  } finally {
    const ms = performance.now() - started;
    if (ms > SLOW_CASE_MS) throw new Finding(`${layer} took ${ms.toFixed(0)} ms on one input`, hexOf(input));
  }
}

function inputOf(mutant: Mutant): Buffer {
  return mutant.how === "bytes" ? Buffer.from(mutant.text, "latin1") : Buffer.from(mutant.text, "utf8");
}

export function commandCase(prng: Prng, ctx: InProcessContext, family = prng.pick(MUTATION_FAMILIES)): string {
  const signed = signedManifestOf(validManifest(ctx.now), ctx.pinned);
  const command = prng.pick(validCommands(ctx.now.toISOString(), signed));
  const mutant = mutateSigned(prng, "command", command, ctx, family);
  const input = inputOf(mutant);
  const { value, refusal } = guarded("verifyCommand", input, (e) => (e instanceof CommandRejectedError ? `command:${e.code}:${commandRefusalKind(e.message)}` : null), () => verifyCommand(input, anyOf([ctx.pinned.publicKey])));
  if (refusal) return refusal;
  if (!mutant.pinnedSigned.has(canonicalJson(value))) throw new Finding(`verifyCommand accepted a command no pinned key signed (${mutant.how})`, hexOf(input));
  return "command:accepted";
}

/** A manifest case's input: as text (the manifest file), or as the object a channel fetch or a command's JSON hands over; null when that object is not JSON. */
export function manifestInput(prng: Prng, ctx: InProcessContext): { mutant: Mutant; due: string | null; input: Buffer; asObject: boolean; document: unknown } | null {
  const base = validManifest(ctx.now);
  let mutant: Mutant;
  let due: string | null = null;
  if (prng.chance(0.2)) {
    const refusable = prng.pick(refusableManifests(ctx.now, ctx.expect.bootedSequence!, REF));
    const signed = signedManifestOf(refusable.manifest(base), ctx.pinned);
    mutant = { how: `refusable:${refusable.code}`, text: JSON.stringify(signed), pinnedSigned: new Set() };
    due = refusable.code;
  } else mutant = mutateSigned(prng, "manifest", base, ctx, prng.pick(MUTATION_FAMILIES));
  const input = inputOf(mutant);
  const asObject = prng.chance(0.5);
  let document: unknown = input.toString("utf8");
  if (asObject) {
    try {
      document = JSON.parse(document as string);
    } catch {
      return null;
    }
  }
  return { mutant, due, input, asObject, document };
}

export function manifestCase(prng: Prng, ctx: InProcessContext): string {
  const made = manifestInput(prng, ctx);
  if (!made) return "manifest:not-json-before-verify";
  const { mutant, due, input, asObject, document } = made;
  const typed = (e: unknown) => (e instanceof ManifestRejectedError ? `manifest:${e.code}` : null);
  const { value, refusal } = guarded(`verifySignedManifest(${asObject ? "object" : "text"})`, input, typed, () => verifySignedManifest(document, ctx.expect));
  if (refusal) {
    if (due && refusal !== `manifest:${due}`) throw new Finding(`verifySignedManifest refused ${mutant.how} as ${refusal}`, hexOf(input));
    return refusal;
  }
  if (!mutant.pinnedSigned.has(canonicalJson(value))) throw new Finding(`verifySignedManifest accepted a manifest no pinned key signed (${mutant.how})`, hexOf(input));
  const m = value!;
  if (Date.parse(m.expires) <= ctx.now.getTime() || m.architecture !== "amd64" || m.ref !== REF || (m.sequence < ctx.expect.bootedSequence! && !m.downgrade)) {
    throw new Finding(`verifySignedManifest accepted a manifest this device must refuse (${mutant.how})`, hexOf(input));
  }
  return "manifest:accepted";
}

export async function deltaFileCase(prng: Prng, ctx: InProcessContext): Promise<string> {
  const { entry, bytes } = ctx.deltaFiles.length > 0 ? prng.pick(ctx.deltaFiles) : pseudoFile(prng);
  const how = prng.pick(["mutate", "same-size", "identical", "truncate", "extend"] as const);
  const got: Buffer = { mutate: () => prng.mutate(bytes), identical: () => bytes, truncate: () => bytes.subarray(0, prng.int(bytes.length)), extend: () => Buffer.concat([bytes, prng.bytes(1 + prng.int(64))]), "same-size": () => flipOne(prng, bytes) }[how]();
  const changed = !got.equals(bytes);
  const typed = (e: unknown) => (e instanceof DeltaFileMismatchError ? `delta:${e.code}:${/the size/.test(e.message) ? "size" : "sha256"}` : null);
  let refusal: string | undefined;
  if (prng.chance(0.05)) {
    // The file path too, as download.ts checks a complete file.
    const file = join(ctx.scratchDir, "delta-file");
    await writeFile(file, got);
    refusal = await verifyDeltaFile(file, entry).then(() => undefined, (e: unknown) => typed(e) ?? Promise.reject(new Finding(`verifyDeltaFile threw ${(e as Error).name}: ${(e as Error).message}`, hexOf(got))));
  } else {
    refusal = guarded("checkDeltaFile", got, typed, () => {
      checkDeltaFileSize(entry, got.length);
      checkDeltaFileDigest(entry, createHash("sha256").update(got).digest("hex"));
    }).refusal;
  }
  if (changed && !refusal) throw new Finding(`a ${how} delta file passed as ${entry.path}`, hexOf(got));
  if (!changed && refusal) throw new Finding(`the signed delta file ${entry.path} was refused: ${refusal}`, "");
  return refusal ?? "delta:accepted";
}

function pseudoFile(prng: Prng): { entry: DeltaFile; bytes: Buffer } {
  const bytes = prng.bytes(256 + prng.int(4096));
  return { entry: { path: "deltas/ab/cdef/0", size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") }, bytes };
}

function flipOne(prng: Prng, bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  if (copy.length > 0) {
    const at = prng.int(copy.length);
    copy[at] = copy[at]! ^ (1 << prng.int(8));
  }
  return copy;
}

/** A byte stream a hostile broker might send, cut in random chunks, through the agent's reader and its command check. */
export function mqttCase(prng: Prng, ctx: InProcessContext): string {
  const command = signCommand(validCommands(ctx.now.toISOString(), signedManifestOf(validManifest(ctx.now), ctx.pinned))[0]!, [ctx.pinned]);
  const { how, bytes } = brokerStream(prng, Buffer.from(command));
  const reader = new PacketReader(MAX_PACKET_BYTES);
  let refusal: string | null = null;
  let packets = 0;
  const started = performance.now();
  try {
    for (let at = 0; at < bytes.length && refusal === null; ) {
      const size = how === "byte-at-a-time" ? 1 : 1 + prng.int(prng.pick([8, 512, 70_000]));
      const chunk = bytes.subarray(at, at + size);
      at += size;
      try {
        for (const packet of reader.push(chunk)) {
          packets++;
          if (packet.type === "publish") commandOf(packet.payload, ctx);
          if (packet.type === "puback" && encodePuback(packet.packetId).length !== 4) throw new Finding("a PUBACK id that does not encode back", hexOf(bytes));
        }
      } catch (error) {
        if (error instanceof Finding) throw error;
        if (!(error instanceof MqttProtocolError)) throw new Finding(`PacketReader threw ${(error as Error).name}: ${(error as Error).message}`, hexOf(bytes));
        refusal = `mqtt:${(error as AptOstreeError).code ?? "MqttProtocolError"}`;
      }
    }
  } finally {
    const ms = performance.now() - started;
    if (ms > SLOW_CASE_MS) throw new Finding(`PacketReader took ${ms.toFixed(0)} ms on a ${bytes.length}-byte stream (${how})`, hexOf(bytes));
  }
  return refusal ?? `mqtt:decoded-${packets > 0 ? "packets" : "nothing"}`;
}

/** What the agent does with a PUBLISH's payload: verify it as a command. */
function commandOf(payload: Buffer, ctx: InProcessContext): void {
  try {
    verifyCommand(payload, anyOf([ctx.pinned.publicKey]));
  } catch (error) {
    if (!(error instanceof CommandRejectedError)) throw new Finding(`verifyCommand threw ${(error as Error).name} on a broker's payload: ${(error as Error).message}`, hexOf(payload));
  }
}
