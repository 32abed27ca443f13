import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_RECIPES_DIR } from "../../../server/cli/defaults.ts";
import { RecipeError, loadRecipe } from "../../../server/compose/recipe.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
beforeEach(async () => {
  dir = await makeTempDir("recipes");
});
afterEach(async () => removeTree(dir));

async function files(tree: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(tree)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
}

const DISTRO = "distro: debian\nsuite: bookworm\nmirror: http://deb.debian.org/debian\nsource-date-epoch: 1\n";
const MACHINE = "machine: m\narchitecture: arm64\npackages: [kmod]\n";

describe("the shipped recipes", () => {
  it.each([
    ["qemu-amd64", "amd64", "linux-image-amd64", "grub-pc-bin"],
    ["qemu-arm64", "arm64", "linux-image-arm64", "grub-efi-arm64-bin"],
  ])("compose appliance-minimal for %s from distro, machine and image layers", async (machine, arch, kernel, bootloader) => {
    const recipe = await loadRecipe(DEFAULT_RECIPES_DIR, "appliance-minimal", machine);
    expect(recipe).toMatchObject({ ref: `debian/bookworm/${machine}/appliance-minimal`, architecture: arch, kernelPackage: kernel, suite: "bookworm", distro: "debian" });
    expect(recipe.bootloaderPackages).toContain(bootloader);
    expect(recipe.packages).toEqual(expect.arrayContaining(["systemd", "ostree-boot", "dracut", "nodejs"]));
    expect(recipe.agent).toBe(true);
    expect(recipe.files).toEqual(["conf/distro/debian-bookworm.yaml", `conf/machine/${machine}.yaml`, "images/appliance-minimal.yaml"]);
    expect(recipe.kernelArgs.some((k) => k.startsWith("console="))).toBe(true);
    expect(recipe.digest).toMatch(/^[0-9a-f]{64}$/);
  });

  it("gives each machine its own digest, and the same digest on every load", async () => {
    const a = await loadRecipe(DEFAULT_RECIPES_DIR, "appliance-minimal", "qemu-amd64");
    const b = await loadRecipe(DEFAULT_RECIPES_DIR, "appliance-minimal", "qemu-arm64");
    expect(a.digest).not.toBe(b.digest);
    expect((await loadRecipe(DEFAULT_RECIPES_DIR, "appliance-minimal", "qemu-amd64")).digest).toBe(a.digest);
  });
});

describe("recipe layering", () => {
  it("appends lists and lets the image override the distro and machine", async () => {
    await files({
      "conf/distro/d.yaml": `${DISTRO}packages: [systemd]\nvariant: minbase\n`,
      "conf/machine/m.yaml": MACHINE,
      "images/i.yaml": "include: ../conf/distro/d.yaml\npackages: [curl]\nvariant: important\nref: custom/${machine}/${image}\n",
    });
    const recipe = await loadRecipe(dir, "i", "m");
    expect(recipe.packages).toEqual(["systemd", "kmod", "curl"]);
    expect(recipe.variant).toBe("important");
    expect(recipe.ref).toBe("custom/m/i");
    expect(recipe.packageOrigins.get("curl")).toBe("images/i.yaml");
    expect(recipe.packageOrigins.get("kmod")).toBe("conf/machine/m.yaml");
  });

  it.each([
    ["an unknown key", { "images/i.yaml": "include: ../conf/distro/d.yaml\npackagez: [x]\n" }, /^images\/i\.yaml: packagez: unknown key/],
    ["a wrong type", { "images/i.yaml": "include: ../conf/distro/d.yaml\npackages: curl\n" }, /^images\/i\.yaml: packages: /],
    ["a bad package name", { "images/i.yaml": "include: ../conf/distro/d.yaml\npackages: [Curl!]\n" }, /^images\/i\.yaml: packages\.0: is not a Debian package name/],
    ["an include cycle", { "images/i.yaml": "include: a.yaml\n", "images/a.yaml": "include: i.yaml\n" }, /^images\/a\.yaml: include: include cycle: images\/i\.yaml -> images\/a\.yaml -> images\/i\.yaml/],
    ["a missing include", { "images/i.yaml": "include: nope.yaml\n" }, /^images\/i\.yaml: include: include 'nope\.yaml' does not exist/],
    ["a missing add-files source", { "images/i.yaml": "include: ../conf/distro/d.yaml\nadd-files: [[gone.txt, /etc/gone]]\n" }, /^images\/i\.yaml: add-files\.0: source 'gone\.txt' does not exist/],
    ["a remove-files path escaping the image", { "images/i.yaml": "include: ../conf/distro/d.yaml\nremove-files: [usr/../../etc]\n" }, /remove-files\.0: a path must not contain '\.\.'/],
    ["invalid YAML", { "images/i.yaml": "packages: [a\n" }, /^images\/i\.yaml: invalid YAML/],
    ["the agent without nodejs", { "images/i.yaml": "include: ../conf/distro/d.yaml\napt-ostree-agent: true\n" }, /apt-ostree-agent: the agent runs on Debian's nodejs: add nodejs to packages/],
    ["no architecture anywhere", { "conf/machine/m.yaml": "machine: m\n", "images/i.yaml": "include: ../conf/distro/d.yaml\n" }, /architecture: is not set by any of these files; set it in the machine recipe/],
  ])("rejects %s, naming the file and the key", async (_what, tree, message) => {
    await files({ "conf/distro/d.yaml": DISTRO, "conf/machine/m.yaml": MACHINE, ...tree });
    const attempt = loadRecipe(dir, "i", "m");
    await expect(attempt).rejects.toThrow(RecipeError);
    await expect(loadRecipe(dir, "i", "m")).rejects.toThrow(message);
  });

  it("names the missing image and machine", async () => {
    await files({ "conf/machine/m.yaml": MACHINE });
    await expect(loadRecipe(dir, "nope", "m")).rejects.toThrow("images/nope.yaml: no image recipe 'nope'");
    await files({ "images/i.yaml": "" });
    await expect(loadRecipe(dir, "i", "nope")).rejects.toThrow("conf/machine/nope.yaml: no machine 'nope'");
  });
});
