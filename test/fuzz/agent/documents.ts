/**
 * The valid signed documents the agent's campaign starts from, and the mutations of them: a
 * command's or manifest's bytes, its JSON structure, or its signatures (thousands of them, unknown
 * key ids, another key's signature, a pinned key's signature over the mutated document). Each
 * mutation says which documents a pinned key signed, so an oracle can tell a refusal that was
 * due from an acceptance that was not.
 */
import { canonicalJson } from "../../../shared/wire/canonical-json.ts";
import { signCanonical } from "../../../shared/sign/canonical-signature.ts";
import { keyId, type Ed25519KeyPair } from "../../../shared/sign/ed25519.ts";
import type { Command } from "../../../shared/wire/command.ts";
import type { Manifest, SignedManifest } from "../../../shared/wire/manifest.ts";
import type { Prng } from "../prng.ts";
import { emitJson, isPlain, mutateStructure, PLAIN_MUTATIONS, STRUCTURAL_MUTATIONS } from "./json-mutations.ts";

/** What one mutation made: the bytes to feed, and the canonical JSON of every payload a pinned key signed. */
export interface Mutant {
  how: string;
  text: string;
  pinnedSigned: Set<string>;
}

export const MUTATION_FAMILIES = ["bytes", "structure", "signatures", "resign-pinned", "resign-stranger"] as const;
export type MutationFamily = (typeof MUTATION_FAMILIES)[number];

/**
 * Mutates a signed document `{ <field>: payload, signatures }` (a command or a manifest).
 * `family` picks the kind of damage; the mutant's `pinnedSigned` holds the original payload and,
 * for "resign-pinned", the mutated payload the pinned key signed.
 */
export function mutateSigned(prng: Prng, field: "command" | "manifest", payload: object, keys: { pinned: Ed25519KeyPair; stranger: Ed25519KeyPair }, family: MutationFamily): Mutant {
  const signatures = signCanonical(payload, [keys.pinned]);
  const original = { [field]: payload, signatures };
  const pinnedSigned = new Set([canonicalJson(payload)]);
  const text = JSON.stringify(original);
  switch (family) {
    case "bytes":
      return { how: "bytes", text: prng.mutate(Buffer.from(text)).toString("latin1"), pinnedSigned };
    case "structure": {
      const kind = prng.pick(STRUCTURAL_MUTATIONS);
      return { how: `structure:${kind}`, text: emitJson(mutateStructure(prng, original, kind)), pinnedSigned };
    }
    case "signatures": {
      const kind = prng.pick(["thousands", "unknown-keyid", "garbage-sig", "empty", "nine", "duplicated-pinned", "pinned-last"] as const);
      const valid = signatures[0]!;
      const junkSig = () => prng.bytes(64).toString("base64");
      const unknownKeyid = () => prng.bytes(32).toString("hex");
      const list = {
        thousands: () => Array.from({ length: prng.pick([100, 1000, 3000]) }, () => ({ keyid: valid.keyid, sig: junkSig() })),
        "unknown-keyid": () => [{ keyid: unknownKeyid(), sig: valid.sig }],
        "garbage-sig": () => [{ keyid: valid.keyid, sig: prng.pick([junkSig(), "", "AAAA", "!".repeat(88), valid.sig.slice(1)]) }],
        empty: () => [],
        nine: () => Array.from({ length: 9 }, (_, i) => (i === 8 ? valid : { keyid: unknownKeyid(), sig: junkSig() })),
        "duplicated-pinned": () => [{ keyid: valid.keyid, sig: junkSig() }, valid],
        "pinned-last": () => [...Array.from({ length: 7 }, () => ({ keyid: unknownKeyid(), sig: junkSig() })), valid],
      }[kind]();
      return { how: `signatures:${kind}`, text: JSON.stringify({ [field]: payload, signatures: list }), pinnedSigned };
    }
    case "resign-pinned":
    case "resign-stranger": {
      let mutated: unknown = payload;
      let kind = "";
      for (let tries = 0; tries < 8 && (mutated === payload || !isPlain(mutated)); tries++) {
        kind = prng.pick(PLAIN_MUTATIONS);
        mutated = mutateStructure(prng, payload, kind as (typeof PLAIN_MUTATIONS)[number]);
      }
      if (!isPlain(mutated) || mutated === null || typeof mutated !== "object" || Array.isArray(mutated)) mutated = { ...payload, extra: 1 };
      const key = family === "resign-pinned" ? keys.pinned : keys.stranger;
      const resigned = { [field]: mutated, signatures: signCanonical(mutated, [key]) };
      if (family === "resign-pinned") pinnedSigned.add(canonicalJson(mutated));
      return { how: `${family}:${kind}`, text: JSON.stringify(resigned), pinnedSigned };
    }
  }
}

export const REF = "debian/bookworm/fuzz-machine/fuzz-image";

/** A manifest as `publish` writes one, valid for `now`. */
export function validManifest(now: Date, overrides: Partial<Manifest> = {}): Manifest {
  const hex = (seed: string) => Buffer.from(seed.repeat(64)).toString("hex").slice(0, 64);
  return {
    schema: 1, ref: REF, commit: hex("c"), version: "7", sequence: 7, architecture: "amd64", channel: "stable",
    issued: new Date(now.getTime() - 3600_000).toISOString(), expires: new Date(now.getTime() + 86400_000).toISOString(), downgrade: false,
    deltas: [
      {
        from: hex("b"), fromVersion: "6", size: 3000,
        files: [
          { path: `deltas/${hex("b").slice(0, 2)}/${hex("b").slice(2)}-${hex("c")}/superblock`, size: 1000, sha256: hex("1") },
          { path: `deltas/${hex("b").slice(0, 2)}/${hex("b").slice(2)}-${hex("c")}/0`, size: 2000, sha256: hex("2") },
        ],
      },
      { from: null, fromVersion: null, size: 9000, files: [{ path: `deltas/${hex("c").slice(0, 2)}/${hex("c").slice(2)}/superblock`, size: 9000, sha256: hex("3") }] },
    ],
    ...overrides,
  };
}

/** Manifests a pinned key signs that the device must still refuse, each with the code it must refuse with. */
export function refusableManifests(now: Date, bootedSequence: number, ref: string): Array<{ code: string; manifest: (base: Manifest) => Manifest }> {
  return [
    { code: "E_MANIFEST_EXPIRED", manifest: (m) => ({ ...m, issued: "2020-01-01T00:00:00Z", expires: new Date(now.getTime() - 1000).toISOString() }) },
    { code: "E_MANIFEST_WRONG_ARCH", manifest: (m) => ({ ...m, architecture: "arm64" }) },
    { code: "E_MANIFEST_WRONG_REF", manifest: (m) => ({ ...m, ref: `${ref}-other` }) },
    { code: "E_MANIFEST_ROLLBACK", manifest: (m) => ({ ...m, sequence: Math.max(1, bootedSequence - 1), downgrade: false }) },
    { code: "E_MANIFEST_MALFORMED", manifest: (m) => ({ ...m, schema: 2 as 1 }) },
  ];
}

export function signedManifestOf(manifest: Manifest, key: Ed25519KeyPair): SignedManifest {
  return { manifest, signatures: signCanonical(manifest, [key]) };
}

/** Valid commands of every type for `device`, signed by nobody yet. */
export function validCommands(issued: string, signed: SignedManifest, device = "dev-1"): Command[] {
  return [
    { type: "update", id: "rollout-41", device, issued, rollout: "41", manifest: signed },
    { type: "update", id: "rollout-42", device, issued, manifest: signed },
    { type: "reboot", id: "reboot-1", device, issued },
    { type: "rollback", id: "rollback-1", device, issued },
    { type: "withdraw", id: "rollout-41", device, issued, reason: "aborted" },
  ];
}

export function pinnedKeyId(key: Ed25519KeyPair): string {
  return keyId(key.publicKey);
}
