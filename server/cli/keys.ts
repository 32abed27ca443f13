import { mkdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { AptOstreeError } from "../../shared/errors.ts";
import { generateKeyPair, keyId } from "../../shared/sign/ed25519.ts";
import { formatPublicKey, formatSecretKey, readSecretKeyFile } from "../../shared/sign/keys.ts";
import { UsageError } from "../../shared/errors.ts";
import { writeFileAtomic } from "../../shared/fs/atomic-write.ts";
import { serializeSignedRoot, type Root } from "../../shared/trust/root.ts";
import { canonicalBytes } from "../../shared/sign/canonical-signature.ts";
import { createHash } from "node:crypto";
import { addRootSignatures, expiryAfterDays, revokeKey, rotateRole, type RoleThresholds } from "../../shared/trust/root-edit.ts";
import { ROLE_NAMES, type RoleName } from "../../shared/trust/signers.ts";
import { addNextVersion, completeOrPend, initRoot, refusePending, type NewVersionResult } from "../keys/root-versions.ts";
import { readRootFile, readTrustDir, writeRoleKey } from "../keys/trust-dir.ts";

const generate = defineCommand({
  name: "generate",
  description: "Write a lone ed25519 key pair: DIR/ed25519.secret (0600) and DIR/ed25519.pub (OSTree's trusted.ed25519 format); fleets use init-root.",
  options: {
    out: { type: "string", valueName: "DIR", required: true, description: "Directory for the key pair (created if missing)" },
    force: { type: "boolean", description: "Overwrite an existing key pair" },
    json: { type: "boolean", description: "Print {secret, public, keyid} as JSON" },
  },
  notes: ["Devices pin the public key: copy ed25519.pub into the image's /usr/lib/apt-ostree/keys.d/."],
  async run({ options, io }) {
    const dir = resolve(options.out);
    const secret = join(dir, "ed25519.secret");
    const pub = join(dir, "ed25519.pub");
    if (!options.force && (await stat(secret).catch(() => null))) {
      throw new AptOstreeError("E_KEY_EXISTS", `${secret} already exists; refusing to overwrite a signing key (pass --force to replace it)`);
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const pair = generateKeyPair();
    // Atomic with its own mode: over an existing file (--force), writeFile would keep the old file's mode.
    await writeFileAtomic(secret, formatSecretKey(pair), 0o600);
    await writeFileAtomic(pub, formatPublicKey(pair.publicKey));
    const id = keyId(pair.publicKey);
    printResult(io, options.json, { secret, public: pub, keyid: id }, `Wrote ${secret} (0600) and ${pub}\nKey id: ${id}`);
  },
});

const TRUST_OPTION = { type: "string", valueName: "DIR", required: true, description: "The trust directory from 'keys init-root' (keep it offline)" } as const;
const REPO_OPTION = { type: "string", valueName: "DIR", description: "Also copy the new root versions to REPO/roots/, where devices fetch them" } as const;
const EXPIRES_OPTION = { type: "string", valueName: "DAYS", default: "365", description: "Days until the new root version expires (devices refuse an expired newest root)" } as const;

function parseDays(text: string, now: Date): string {
  const days = Number(text);
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new UsageError(`--expires-days: '${text}' must be a whole number of days, 1 to 3650`);
  return expiryAfterDays(now, days);
}

function parseThresholds(items: string[] | undefined): RoleThresholds {
  const thresholds: RoleThresholds = {};
  for (const item of items ?? []) {
    const match = /^(root|image|release|command)=([1-8])$/.exec(item);
    if (!match) throw new UsageError(`--threshold: '${item}' must be ROLE=N with ROLE one of ${ROLE_NAMES.join(", ")} and N 1..8`);
    thresholds[match[1] as RoleName] = Number(match[2]);
  }
  return thresholds;
}

function describeVersion(result: NewVersionResult): string {
  if (result.complete) {
    const published = result.published.length > 0 ? `\nPublished root version(s) ${result.published.join(", ")} to the repo: devices follow at their next check.` : "\nCopy the new version to the repo (pass --repo, or publish --trust): devices fetch REPO/roots/.";
    return `Root version ${result.version} is complete: ${result.file}${published}`;
  }
  const { old, new: fresh } = result.missing!;
  return `Root version ${result.version} waits for signatures in ${result.file}: ${old} more by the previous root's keys, ${fresh} more by its own.\nEach holder runs: apt-ostree-server keys sign-root --root ${result.file} --key ROOT-KEY.secret --trust DIR`;
}

const initRootCommand = defineCommand({
  name: "init-root",
  description: "Start a fleet's root of trust: root keys, one key per role (image, release, command) and root version 1, in a new trust directory.",
  options: {
    out: { type: "string", valueName: "DIR", required: true, description: "The trust directory to create" },
    "root-keys": { type: "string", valueName: "N", default: "1", description: "Number of root keys (give each to a different holder)" },
    threshold: { type: "string", valueName: "ROLE=N", multiple: true, description: "Signatures a role needs (repeat; default 1 each), e.g. root=2" },
    "expires-days": EXPIRES_OPTION,
    json: { type: "boolean", description: "Print {dir, root, keys: [{role, keyid, secret}]} as JSON" },
  },
  notes: [
    "Ship DIR/root.json in every image (compose --trust-root DIR/root.json). publish needs the image and",
    "release keys (publish --trust DIR), serve only the command key (serve --key DIR/keys/command-*.secret).",
    "Keep the root keys offline; see docs/trust.md.",
  ],
  async run({ options, io }) {
    const rootKeys = Number(options["root-keys"]);
    if (!Number.isInteger(rootKeys) || rootKeys < 1 || rootKeys > 8) throw new UsageError(`--root-keys: '${options["root-keys"]}' must be 1..8`);
    const thresholds = parseThresholds(options.threshold);
    if ((thresholds.root ?? 1) > rootKeys) throw new UsageError(`--threshold root=${thresholds.root} needs at least that many --root-keys`);
    const result = await initRoot(resolve(options.out), { rootKeys, thresholds, expires: parseDays(options["expires-days"], new Date()) });
    const lines = [`Wrote root version 1 to ${result.root}`, ...result.keys.map((k) => `  ${k.role.padEnd(8)} ${k.keyid.slice(0, 16)}  ${k.secret}`)];
    printResult(io, options.json, result, lines.join("\n"));
  },
});

const rotateCommand = defineCommand({
  name: "rotate",
  description: "Give a role a new key: the next root version, with the old key retired as revoked, signed by the root keys in the trust directory.",
  options: {
    trust: TRUST_OPTION,
    role: { type: "string", valueName: "ROLE", required: true, description: `The role to rotate: ${ROLE_NAMES.join(", ")}` },
    keys: { type: "string", valueName: "N", default: "1", description: "New keys for the role" },
    threshold: { type: "string", valueName: "N", description: "Signatures the role needs from now on (default: as before, at most the keys)" },
    repo: REPO_OPTION,
    "expires-days": EXPIRES_OPTION,
    json: { type: "boolean", description: "Print the new version's {version, complete, file, missing, published, keys} as JSON" },
  },
  notes: ["Rotating the command key: restart serve with the new key. The image or release key: publish with the new one."],
  async run({ options, io }) {
    const role = options.role as RoleName;
    if (!ROLE_NAMES.includes(role)) throw new UsageError(`--role: '${options.role}' must be one of ${ROLE_NAMES.join(", ")}`);
    const count = Number(options.keys);
    if (!Number.isInteger(count) || count < 1 || count > 8) throw new UsageError(`--keys: '${options.keys}' must be 1..8`);
    const trust = await readTrustDir(resolve(options.trust));
    await refusePending(trust, trust.newest.root.version + 1);
    const before = trust.newest.root.roles[role].threshold;
    if (options.threshold === undefined && count < before) {
      throw new UsageError(`the ${role} role needs ${before} signatures; pass --keys ${before} (or more), or lower it explicitly with --threshold`);
    }
    const threshold = options.threshold === undefined ? before : Number(options.threshold);
    if (!Number.isInteger(threshold) || threshold < 1 || threshold > count) throw new UsageError(`--threshold: '${options.threshold}' must be 1..${count}`);
    const pairs = Array.from({ length: count }, generateKeyPair);
    const next = rotateRole(trust.newest.root, role, pairs.map((k) => k.publicKey), threshold, parseDays(options["expires-days"], new Date()));
    const keys = [];
    for (const pair of pairs) keys.push({ keyid: keyId(pair.publicKey), secret: (await writeRoleKey(trust.dir, role, pair)).secret });
    const result = await addNextVersion(trust, next, role === "root" ? pairs : [], options.repo ? resolve(options.repo) : null);
    printResult(io, options.json, { ...result, keys, threshold: { before, after: threshold } }, `${describeVersion(result)}\nThe ${role} role: ${count} new key(s), threshold ${before} -> ${threshold}:\n${keys.map((k) => `  ${k.keyid.slice(0, 16)}  ${k.secret}`).join("\n")}`);
  },
});

const revokeCommand = defineCommand({
  name: "revoke",
  description: "Revoke a key (a leaked one) fleet-wide: the next root version lists it as revoked, and devices refuse anything it signs.",
  positionals: [{ name: "KEYID", description: "The key's id, or a prefix of at least 8 hex digits", required: true }],
  options: { trust: TRUST_OPTION, repo: REPO_OPTION, "expires-days": EXPIRES_OPTION, json: { type: "boolean", description: "Print the new version as JSON" } },
  notes: ["A role's last key cannot be revoked alone: rotate the role (keys rotate --role R), which retires its old key as revoked."],
  async run({ options, positionals, io }) {
    const trust = await readTrustDir(resolve(options.trust));
    const prefix = positionals[0]!.toLowerCase();
    if (!/^[0-9a-f]{8,64}$/.test(prefix)) throw new UsageError(`KEYID: '${positionals[0]}' must be at least 8 hex digits of a key id`);
    const matches = Object.keys(trust.newest.root.keys).filter((id) => id.startsWith(prefix));
    if (matches.length !== 1) {
      const revoked = Object.keys(trust.newest.root.revoked).some((id) => id.startsWith(prefix));
      throw new AptOstreeError("E_KEY_NOT_FOUND", revoked ? `key ${prefix} is already revoked` : matches.length === 0 ? `no key ${prefix} in root version ${trust.newest.root.version} (see 'keys show')` : `${prefix} names ${matches.length} keys; give more digits`);
    }
    const id = matches[0]!;
    let next;
    try {
      next = revokeKey(trust.newest.root, id, parseDays(options["expires-days"], new Date()));
    } catch (error) {
      throw new AptOstreeError("E_KEY_LAST_OF_ROLE", (error as Error).message);
    }
    const result = await addNextVersion(trust, next, [], options.repo ? resolve(options.repo) : null);
    printResult(io, options.json, { ...result, revoked: id }, `Revoked ${id.slice(0, 16)}.\n${describeVersion(result)}`);
  },
});

const signRootCommand = defineCommand({
  name: "sign-root",
  description: "Add a root key holder's signature to a root version waiting for signatures; with --trust, complete it once the thresholds are met.",
  options: {
    root: { type: "string", valueName: "FILE", required: true, description: "The pending root version (TRUST/pending/<N>.root.json, or a copy)" },
    key: { type: "string", valueName: "FILE", required: true, description: "This holder's root secret key" },
    trust: { type: "string", valueName: "DIR", description: "The trust directory: checks against its newest version and completes the new one when the thresholds are met" },
    previous: { type: "string", valueName: "FILE", description: "Without --trust: the version before it (REPO/roots/<N-1>.root.json), to check the change against" },
    repo: REPO_OPTION,
    json: { type: "boolean", description: "Print {version, digest, signatures, complete, ...} as JSON" },
  },
  notes: ["Compare the digest it prints with the one the other holders see before you sign: it names exactly what you sign."],
  async run({ options, io }) {
    const file = resolve(options.root);
    const pending = await readRootFile(file);
    const trust = options.trust ? await readTrustDir(resolve(options.trust)) : null;
    const previous = trust ? trust.newest : options.previous ? await readRootFile(resolve(options.previous)) : null;
    if (previous && previous.root.version !== pending.root.version - 1) {
      throw new UsageError(`${file} is root version ${pending.root.version}, not the version after ${previous.root.version}`);
    }
    const key = await readSecretKeyFile(resolve(options.key));
    const id = keyId(key.publicKey);
    const holds = pending.root.roles.root.keyids.includes(id) || (previous?.root.roles.root.keyids.includes(id) ?? false);
    if (!holds) {
      throw new AptOstreeError("E_KEY_WRONG_ROLE", `key ${id.slice(0, 16)} holds no root role in version ${pending.root.version}${previous ? ` or ${previous.root.version}` : " (an outgoing root key: pass --previous FILE or --trust DIR)"}; refusing to sign`);
    }
    const signed = addRootSignatures(pending, [key]);
    await writeFileAtomic(file, serializeSignedRoot(signed));
    const digest = createHash("sha256").update(canonicalBytes(signed.root)).digest("hex");
    const summary = [`Root version ${signed.root.version} (sha256 ${digest}), expires ${signed.root.expires}`, ...describeChange(previous?.root ?? null, signed.root)];
    if (!trust) {
      printResult(io, options.json, { version: signed.root.version, digest, signatures: signed.signatures.length, signedBy: id }, `${summary.join("\n")}\nSigned with ${id.slice(0, 16)} (${signed.signatures.length} signature(s)) in ${file}`);
      return;
    }
    const result = await completeOrPend(trust, signed, options.repo ? resolve(options.repo) : null);
    printResult(io, options.json, { ...result, digest, signatures: signed.signatures.length, signedBy: id }, `${summary.join("\n")}\n${describeVersion(result)}`);
  },
});

/** What a new version changes, role by role, for the holder about to sign it. */
function describeChange(before: Root | null, after: Root): string[] {
  const short = (ids: string[]) => ids.map((k) => k.slice(0, 16)).join(", ");
  return ROLE_NAMES.map((role) => {
    const now = after.roles[role];
    const was = before?.roles[role];
    const same = was && was.threshold === now.threshold && was.keyids.join() === now.keyids.join();
    return `  ${role.padEnd(8)} ${same ? "unchanged" : `${was ? `${was.threshold} of [${short(was.keyids)}] -> ` : ""}${now.threshold} of [${short(now.keyids)}]`}`;
  }).concat(`  revoked  ${Object.keys(after.revoked).length} key(s)${before ? `, ${Object.keys(after.revoked).filter((k) => !(k in before.revoked)).length} new` : ""}`);
}

const showCommand = defineCommand({
  name: "show",
  description: "Show a root: its version, expiry, each role's keys and threshold, the revoked keys, and who signed it.",
  options: {
    trust: { type: "string", valueName: "DIR", description: "A trust directory (its newest version and what waits for signatures)" },
    root: { type: "string", valueName: "FILE", description: "A root file (e.g. REPO/roots/3.root.json or a device's /usr/lib/apt-ostree/root.json)" },
    json: { type: "boolean", description: "Print the root and its signatures as JSON" },
  },
  async run({ options, io }) {
    if (!options.trust === !options.root) throw new UsageError("pass --trust DIR or --root FILE");
    const signed = options.trust ? (await readTrustDir(resolve(options.trust))).newest : await readRootFile(resolve(options.root!));
    const { root } = signed;
    const expired = Date.parse(root.expires) <= Date.now();
    const lines = [
      `Root version ${root.version}, expires ${root.expires}${expired ? " (EXPIRED)" : ""}`,
      ...ROLE_NAMES.map((role) => `  ${role.padEnd(8)} threshold ${root.roles[role].threshold} of ${root.roles[role].keyids.map((id) => id.slice(0, 16)).join(", ")}`),
      `  revoked  ${Object.keys(root.revoked).length === 0 ? "none" : Object.keys(root.revoked).map((id) => id.slice(0, 16)).join(", ")}`,
      `  signed by ${signed.signatures.map((s) => s.keyid.slice(0, 16)).join(", ")}`,
    ];
    printResult(io, options.json, { ...signed, expired }, lines.join("\n"));
  },
});

export const keysCommand = defineCommand({
  name: "keys",
  description: "Manage the fleet's root of trust and the ed25519 keys of each role (docs/trust.md).",
  subcommands: [initRootCommand, showCommand, rotateCommand, revokeCommand, signRootCommand, generate],
});
