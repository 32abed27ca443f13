import { resolve } from "node:path";
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { UsageError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import { readSecretKeyFile } from "../../shared/sign/keys.ts";
import { parseDurationSeconds } from "../../shared/duration.ts";
import { publish, type PublishKeys } from "../publish/publish.ts";
import { trustPublishKeys } from "../keys/trust-dir.ts";
import { formatBytes } from "./compose.ts";
import { defaultRepo } from "./defaults.ts";

export const publishCommand = defineCommand({
  name: "publish",
  description: "Sign a ref's commit, generate static deltas, update the signed summary and write the signed channel manifest.",
  options: {
    repo: { type: "string", valueName: "DIR", description: "Archive repo (default: $APT_OSTREE_REPO or /var/lib/apt-ostree-server/repo)" },
    ref: { type: "string", valueName: "REF", required: true, description: "Ref to publish, e.g. debian/bookworm/qemu-amd64/appliance-minimal" },
    trust: { type: "string", valueName: "DIR", description: "Trust directory (keys init-root): signs with its image and release keys and publishes its root versions" },
    "image-key": { type: "string", valueName: "FILE", multiple: true, description: "An image role secret key: signs the commit and the summary (repeat for a threshold)" },
    "release-key": { type: "string", valueName: "FILE", multiple: true, description: "A release role secret key: signs the channel manifest (repeat for a threshold)" },
    key: { type: "string", valueName: "FILE", description: "Legacy: one key (keys generate) for commit, summary and manifest, for devices that pin keys.d" },
    channel: { type: "string", valueName: "NAME", default: "stable", description: "Channel the manifest is published on" },
    "delta-depth": { type: "string", valueName: "K", default: "3", description: "Static deltas from this many previous versions (plus one from scratch)" },
    expires: { type: "string", valueName: "DURATION", default: "30d", description: "Validity of the signed manifest" },
    "no-scratch-delta": { type: "boolean", description: "Skip the delta from scratch (the slowest; only new installs over the network use it)" },
    downgrade: { type: "boolean", description: "Allow publishing an older sequence than the channel has (a signed downgrade)" },
    json: { type: "boolean", description: "Print the manifest path and the deltas written, with sizes, as the last line of stdout" },
  },
  notes: [
    "Killed at any point, the repo keeps serving the previous manifest; rerun the same command to complete.",
    "Keys: --trust DIR, or --image-key and --release-key, or the legacy --key (docs/trust.md).",
  ],
  async run({ options, io }) {
    const depth = Number(options["delta-depth"]);
    if (!Number.isInteger(depth) || depth < 0) throw new UsageError(`--delta-depth: '${options["delta-depth"]}' is not a non-negative integer`);
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(options.channel)) throw new UsageError(`--channel: '${options.channel}' must be lowercase letters, digits, '.', '_' or '-'`);
    const result = await publish({
      repo: resolve(options.repo ?? defaultRepo(io.env)),
      ref: options.ref,
      ...(await publishKeys(options)),
      channel: options.channel,
      deltaDepth: depth,
      scratchDelta: !options["no-scratch-delta"],
      expiresInSeconds: parseDurationSeconds(options.expires, "expires"),
      downgrade: options.downgrade,
      log: createLogger({ name: "publish" }),
    });
    const text = [
      `Published ${result.ref} version ${result.version} (sequence ${result.sequence}) on ${result.channel}`,
      `  Commit:   ${result.commit}`,
      `  Manifest: ${result.manifest}`,
      ...result.deltas.map((d) => `  Delta from ${d.fromVersion ?? "scratch"}: ${formatBytes(d.size)} in ${d.files.length} file(s)${d.generated ? "" : " (existing)"}`),
    ].join("\n");
    printResult(io, options.json, result, text);
  },
});

async function publishKeys(options: { trust?: string; "image-key"?: string[]; "release-key"?: string[]; key?: string }): Promise<PublishKeys> {
  const given = [options.trust !== undefined, options["image-key"] !== undefined || options["release-key"] !== undefined, options.key !== undefined].filter(Boolean).length;
  if (given !== 1) throw new UsageError("sign with one of: --trust DIR, --image-key FILE and --release-key FILE, or --key FILE");
  if (options.trust) return trustPublishKeys(resolve(options.trust));
  if (options.key) return { key: await readSecretKeyFile(resolve(options.key)) };
  const read = (files: string[] | undefined, role: string) => {
    if (!files?.length) throw new UsageError(`--${role}-key: publish needs the ${role} key too`);
    return Promise.all(files.map((file) => readSecretKeyFile(resolve(file))));
  };
  return { imageKeys: await read(options["image-key"], "image"), releaseKeys: await read(options["release-key"], "release") };
}
