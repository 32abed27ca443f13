import { mkdir, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { AptOstreeError } from "../../shared/errors.ts";
import { generateKeyPair, keyId } from "../../shared/sign/ed25519.ts";
import { formatPublicKey, formatSecretKey } from "../../shared/sign/keys.ts";

const generate = defineCommand({
  name: "generate",
  description: "Write a new ed25519 signing key pair: DIR/ed25519.secret (0600) and DIR/ed25519.pub (OSTree's trusted.ed25519 format).",
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
    await writeFile(secret, formatSecretKey(pair), { mode: 0o600 });
    await writeFile(pub, formatPublicKey(pair.publicKey), { mode: 0o644 });
    const id = keyId(pair.publicKey);
    printResult(io, options.json, { secret, public: pub, keyid: id }, `Wrote ${secret} (0600) and ${pub}\nKey id: ${id}`);
  },
});

export const keysCommand = defineCommand({
  name: "keys",
  description: "Manage the ed25519 keys that sign commits, summaries and manifests.",
  subcommands: [generate],
});
