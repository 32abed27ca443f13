/**
 * The agent's settings: defaults, then `/usr/lib/apt-ostree/agent.yaml`, then
 * `/etc/apt-ostree/agent.yaml` (later fragments override earlier ones key by key), validated
 * into `AgentSettings`. Every path is overridable, so tests run the real agent on a throwaway
 * sysroot; nothing here is a test switch.
 */
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import * as z from "zod/mini";
import { describeIssue } from "../../shared/zod.ts";
import { AptOstreeError } from "../../shared/errors.ts";
import { NAME_PATTERN } from "../../shared/wire/topics.ts";
import { KERNEL_BOOT_ID_FILE } from "../../shared/process-alive.ts";

const nonEmpty = z.string().check(z.minLength(1));
const positive = z.number().check(z.positive());

export const AgentConfigSchema = z.partial(
  z.strictObject({
    /** The server's HTTP base URL; the repo is at `<server>/repo`. */
    server: z.string().check(z.regex(/^https?:\/\/\S+$/, "must be an http:// or https:// URL")),
    /**
     * The repo's base URL when a static host or CDN serves it apart from the server (`serve
     * --repo-url`); null: `<server>/repo`. An update command signed with a repo of its own takes
     * precedence for that update. Over https:// it must chain to `caFile` like the server.
     */
    repo: z.nullable(z.string().check(z.regex(/^https?:\/\/\S+$/, "must be an http:// or https:// URL"))),
    /** The MQTT broker: the server's embedded one or an external broker. */
    mqtt: z.string().check(z.regex(/^mqtts?:\/\//, "must be an mqtt:// or mqtts:// URL")),
    /**
     * `token`: the signed token is the MQTT password (embedded broker); `hello`: publish it (external
     * broker); `certificate`: a client certificate the server issues for the device's key over
     * HTTPS (external broker enforcing identities, docs/mosquitto/; needs mqtts://).
     */
    mqttAuth: z.enum(["token", "hello", "certificate"]),
    /** The CA an https:// server and an mqtts:// broker must chain to, and the only one trusted (the image pins it); unused for http:// and mqtt://. */
    caFile: nonEmpty,
    deviceId: z.string().check(z.regex(NAME_PATTERN, "letters, digits, '.', '_' and '-' only")),
    /** Groups the device reports; the operator decides which it is in (shown on the server, never selected on). */
    groups: z.array(z.string().check(z.regex(NAME_PATTERN))),
    /** The fleet enrollment secret: its proof in the token lets a server with --auto-accept admit the device; a missing file is no proof. */
    enrollmentSecretFile: nonEmpty,
    ref: nonEmpty,
    channel: nonEmpty,
    architecture: nonEmpty,
    osname: nonEmpty,
    sysroot: nonEmpty,
    stateDir: nonEmpty,
    keysDir: nonEmpty,
    /** The image's root of trust (docs/trust.md); without it the keys in keysDir sign every role (legacy). */
    rootFile: nonEmpty,
    /** Where the image keys are written for stock `ostree` (trusted.ed25519.d); empty: nowhere. */
    ostreeKeysFile: z.string(),
    healthDir: nonEmpty,
    /** The booted deployment is the one whose directory is this root (ostree compares device and inode the same way). */
    rootDir: nonEmpty,
    /** Changes on every boot: tells a restart from a reboot. */
    bootIdFile: nonEmpty,
    socket: nonEmpty,
    grubenv: nonEmpty,
    /** Boot attempts a new deployment gets before GRUB falls back. */
    bootTries: z.int().check(z.minimum(1), z.maximum(9)),
    /** `immediate`, `window` (in `rebootWindow`), or `command` (on the server's reboot command). */
    rebootStrategy: z.enum(["immediate", "window", "command"]),
    /** Daily window for the `window` strategy, local time, e.g. `02:00-04:00`. */
    rebootWindow: z.string().check(z.regex(/^\d\d:\d\d-\d\d:\d\d$/, "must look like 02:00-04:00")),
    rebootCommand: z.array(z.string()).check(z.minLength(1)),
    /** Stage with `--stage` (finalized at shutdown); false deploys at once (a sysroot that is not booted). */
    stage: z.boolean(),
    healthTimeoutSeconds: positive,
    /** The agent must reach the server within this long after boot for the boot to count healthy. */
    serverReachTimeoutSeconds: positive,
    checkSystemdUnits: z.boolean(),
    /**
     * apt-ostree's boot units run this boot (the image): apt-ostree-bless.service clears the boot
     * counter and apt-ostree-reboot-on-failure.service reboots after a failed required check, so
     * the agent only gives the verdict. False (a test sysroot): the agent blesses and reboots itself.
     */
    bootUnits: z.boolean(),
    downloadStallSeconds: positive,
    /** Poll the channel manifest over HTTP this often while MQTT is unreachable. */
    pollSeconds: positive,
    /** APT configuration package layering resolves with: sources.list, sources.list.d/, trusted.gpg.d/ (docs/layering.md). */
    layeringAptDir: nonEmpty,
    /**
     * The suite of the server's APT repository (`<repo>/apt`, apt-ostree-server apt-repo) that
     * layering adds to its sources; compose sets it with --apt-keyring, which puts the
     * repository's key in the image. null: layer from layeringAptDir's sources alone.
     */
    layeringSuite: z.nullable(z.string().check(z.regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "must be a Debian suite name"))),
    /** false: install, uninstall and override refuse (a fleet whose images must stay as built). */
    allowLayering: z.boolean(),
  }),
);

export type AgentConfig = z.infer<typeof AgentConfigSchema>;
export type AgentSettings = Required<Omit<AgentConfig, "deviceId">> & { deviceId: string | null };

export const AGENT_DEFAULTS: AgentSettings = {
  server: "https://127.0.0.1:8080",
  repo: null,
  mqtt: "mqtts://127.0.0.1:1883",
  mqttAuth: "token",
  caFile: "/etc/apt-ostree/ca.pem",
  deviceId: null,
  groups: [],
  enrollmentSecretFile: "/etc/apt-ostree/enrollment-secret",
  ref: "",
  channel: "stable",
  architecture: process.arch === "arm64" ? "arm64" : "amd64",
  osname: "debian",
  sysroot: "/",
  stateDir: "/var/lib/apt-ostree",
  keysDir: "/usr/lib/apt-ostree/keys.d",
  rootFile: "/usr/lib/apt-ostree/root.json",
  ostreeKeysFile: "/etc/ostree/trusted.ed25519.d/apt-ostree-image",
  healthDir: "/etc/apt-ostree/health.d",
  rootDir: "/",
  bootIdFile: KERNEL_BOOT_ID_FILE,
  socket: "/run/apt-ostree/agent.sock",
  grubenv: "/boot/grub/grubenv",
  bootTries: 3,
  rebootStrategy: "immediate",
  rebootWindow: "02:00-04:00",
  rebootCommand: ["systemctl", "reboot"],
  stage: true,
  healthTimeoutSeconds: 300,
  serverReachTimeoutSeconds: 300,
  checkSystemdUnits: true,
  bootUnits: false,
  downloadStallSeconds: 60,
  pollSeconds: 3600,
  layeringAptDir: "/etc/apt",
  layeringSuite: null,
  allowLayering: true,
};

export const CONFIG_FILES = ["/usr/lib/apt-ostree/agent.yaml", "/etc/apt-ostree/agent.yaml"];

export class AgentConfigError extends AptOstreeError {
  constructor(message: string) {
    super("E_CONFIG", message);
  }
}

export function parseAgentConfig(text: string, source: string): AgentConfig {
  let document: unknown;
  try {
    document = parseYaml(text) ?? {};
  } catch (error) {
    throw new AgentConfigError(`${source}: not valid YAML: ${(error as Error).message}`);
  }
  const parsed = AgentConfigSchema.safeParse(document);
  if (!parsed.success) {
    throw new AgentConfigError(`${source}: ${describeIssue(parsed.error.issues[0]!, "file")}`);
  }
  return parsed.data;
}

/** Merges the fragments that exist, in order, over the defaults. */
export async function loadAgentSettings(files: string[], options: { requireRef?: boolean } = {}): Promise<AgentSettings> {
  let settings: AgentSettings = { ...AGENT_DEFAULTS };
  for (const file of files) {
    const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return null;
      throw new AgentConfigError(`${file}: ${error.message}`);
    });
    if (text !== null) settings = { ...settings, ...parseAgentConfig(text, file) };
  }
  if (options.requireRef !== false && !settings.ref) throw new AgentConfigError(`no 'ref' set in ${files.join(" or ")}: name the ref this device follows`);
  return settings;
}
