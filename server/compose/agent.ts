/**
 * Installs the apt-ostree device agent into an image (recipe key `apt-ostree-agent: true`):
 * the esbuild bundle under /usr/lib/apt-ostree/, the systemd units (the agent, and the boot
 * health check, bless and reboot-on-failure units with their shell helpers in
 * /usr/lib/apt-ostree/boot/, and an emergency.service drop-in that reboots instead of waiting for
 * a root shell nobody will type; docs/boot.md), `apt-ostree` on PATH and the image's agent
 * defaults (the ref it follows, its architecture). The image runs it with Debian's nodejs, which
 * the recipe must list.
 */
import { chmod, copyFile, cp, mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ARCHIVE_KEYRING_IN_IMAGE } from "../../shared/image/archive-keyring.ts";
import { fileURLToPath } from "node:url";
import { stringify as toYaml } from "yaml";
import { AGENT_BUNDLE, bundleDevice, CLI_BUNDLE } from "../../device/bundle.ts";
import { runInChroot } from "../../shared/chroot.ts";
import type { ComposeProgress } from "./progress.ts";
import type { Recipe } from "./recipe.ts";

const UNITS_DIR = fileURLToPath(new URL("../../device/units/", import.meta.url));
const BOOT_HELPERS_DIR = fileURLToPath(new URL("../../device/boot/", import.meta.url));

/**
 * Where an image that trusts its server's APT repository keeps the other sources layering uses:
 * none unless the recipe adds some (add-files into its sources.list.d/), so a device layers from
 * its server alone and needs no Debian mirror. A device's /etc/apt-ostree/agent.yaml may point
 * layeringAptDir elsewhere (/etc/apt: the device's own sources).
 */
export const LAYERING_APT_DIR = "usr/lib/apt-ostree/layering-apt";

/** The APT repository key where layering's source names it (Signed-By), read-only in /usr like Debian's keyrings. */
export async function installArchiveKeyring(root: string, keyring: Uint8Array): Promise<void> {
  const target = join(root, ARCHIVE_KEYRING_IN_IMAGE);
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, keyring, { mode: 0o644 });
  for (const dir of ["sources.list.d", "trusted.gpg.d"]) await mkdir(join(root, LAYERING_APT_DIR, dir), { recursive: true });
}

export interface AgentTrust {
  /** root.json text: the first root of the chain (docs/trust.md). */
  trustRoot: string | null;
  /** The server's APT repository keyring (apt-repo): layering adds `<repo>/apt` on the recipe's suite. */
  aptKeyring: Uint8Array | null;
}

export async function installAgent(root: string, recipe: Recipe, bundleDir: string, progress: ComposeProgress, trust: AgentTrust): Promise<void> {
  const { trustRoot, aptKeyring } = trust;
  progress.phase("agent", "bundling apt-ostreed and apt-ostree for the image");
  await bundleDevice(bundleDir);
  const lib = join(root, "usr/lib/apt-ostree");
  await mkdir(lib, { recursive: true });
  await cp(bundleDir, lib, { recursive: true });
  for (const entry of [AGENT_BUNDLE, CLI_BUNDLE]) await chmod(join(lib, entry), 0o755);
  await mkdir(join(root, "usr/bin"), { recursive: true });
  await symlink(`../lib/apt-ostree/${CLI_BUNDLE}`, join(root, "usr/bin/apt-ostree"));
  await writeFile(
    join(lib, "agent.yaml"),
    `# The image's agent defaults; /etc/apt-ostree/agent.yaml overrides them key by key.\n# The boot units bless the boot and reboot after a failed check; the agent gives the verdict.\n${toYaml({ ref: recipe.ref, architecture: recipe.architecture, bootUnits: true, ...(aptKeyring ? { layeringSuite: recipe.suite, layeringAptDir: `/${LAYERING_APT_DIR}` } : {}) })}`,
  );
  if (aptKeyring) await installArchiveKeyring(root, aptKeyring);
  // Read-only in /usr: the first root of the chain; newer ones go to /var/lib/apt-ostree/trust.
  if (trustRoot !== null) await writeFile(join(lib, "root.json"), trustRoot, { mode: 0o644 });
  const units = (await readdir(UNITS_DIR)).filter((name) => /\.(service|target|timer)$/.test(name));
  const unitDir = join(root, "usr/lib/systemd/system");
  await mkdir(unitDir, { recursive: true });
  for (const unit of units) await copyFile(join(UNITS_DIR, unit), join(unitDir, unit));
  // Drop-ins for Debian's own units (emergency.service reboots instead of waiting for a root shell).
  for (const dropIns of (await readdir(UNITS_DIR)).filter((name) => name.endsWith(".d"))) {
    await cp(join(UNITS_DIR, dropIns), join(unitDir, dropIns), { recursive: true });
  }
  await mkdir(join(lib, "boot"), { recursive: true });
  for (const helper of await readdir(BOOT_HELPERS_DIR)) {
    await copyFile(join(BOOT_HELPERS_DIR, helper), join(lib, "boot", helper));
    await chmod(join(lib, "boot", helper), 0o755);
  }
  // Units started only by another (OnFailure=) have no [Install] section: nothing to enable.
  const enabled: string[] = [];
  for (const unit of units) if (/^\[Install\]/m.test(await readFile(join(UNITS_DIR, unit), "utf8"))) enabled.push(unit);
  await runInChroot(root, ["systemctl", "enable", ...enabled], { what: `enabling ${enabled.join(", ")}` });
}
