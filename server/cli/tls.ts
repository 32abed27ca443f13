import { resolve } from "node:path";
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { UsageError } from "../../shared/errors.ts";
import { normalizeHostName } from "../tls/host-name.ts";
import { DEFAULT_TLS_HOSTS, initTlsDir } from "../tls/tls-dir.ts";
import { CA_DAYS, SERVER_DAYS } from "../tls/certificates.ts";

const init = defineCommand({
  name: "init",
  description: "Make a private CA and a server certificate: DIR/ca.pem, DIR/ca.key (0600), DIR/server.pem, DIR/server.key (0600).",
  options: {
    out: { type: "string", valueName: "DIR", required: true, description: "Directory for the files (created 0700 if missing)" },
    host: { type: "string", valueName: "NAME", multiple: true, description: `A DNS name or IP address devices and clients use to reach the server (repeat; default ${DEFAULT_TLS_HOSTS.join(" and ")})` },
    force: { type: "boolean", description: "Replace an existing CA and certificate (every device pinning the old CA must get the new one)" },
    json: { type: "boolean", description: "Print {dir, ca, caKey, cert, key, hosts} as JSON" },
  },
  notes: [
    `ECDSA P-256; the CA is valid ${CA_DAYS / 365} years, the server certificate ${SERVER_DAYS / 365}. IP addresses go in IP SANs.`,
    "Serve with 'serve --tls-dir DIR'; devices pin DIR/ca.pem ('image build --ca DIR/ca.pem', agent setting caFile).",
    "Keep ca.key offline if you can: it is needed only to issue certificates.",
  ],
  async run({ options, io }) {
    const dir = resolve(options.out);
    const hosts = options.host?.length ? options.host : DEFAULT_TLS_HOSTS;
    const bad = hosts.find((name) => normalizeHostName(name) === null);
    if (bad !== undefined) throw new UsageError(`--host '${bad}' is neither a DNS name nor an IP address (e.g. server.example, 192.0.2.10)`);
    const result = await initTlsDir(dir, hosts, { force: options.force });
    printResult(io, options.json, result, [
      `Wrote ${result.ca} and ${result.caKey} (0600): the CA devices pin`,
      `Wrote ${result.cert} and ${result.key} (0600) for ${result.hosts.join(", ")}`,
      `Serve with: apt-ostree-server serve --tls-dir ${dir}`,
    ].join("\n"));
  },
});

export const tlsCommand = defineCommand({
  name: "tls",
  description: "Make the private CA and the server certificate that serve's HTTPS, MQTT over TLS and WSS use.",
  subcommands: [init],
});
