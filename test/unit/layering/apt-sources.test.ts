import { mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { prepareAptEtc, SERVER_CA_FILE, SERVER_SOURCE_FILE, serverSourceEntry } from "../../../device/layering/apt-sources.ts";
import { LayeringError } from "../../../device/layering/errors.ts";
import { ARCHIVE_KEYRING_IN_IMAGE } from "../../../shared/image/archive-keyring.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
let aptEtc: string;
let stateDir: string;
let withKey: string;
let withoutKey: string;

beforeEach(async () => {
  dir = await makeTempDir("apt-sources");
  aptEtc = join(dir, "apt");
  stateDir = join(dir, "state");
  withKey = join(dir, "root-with-key");
  withoutKey = join(dir, "root-without-key");
  await mkdir(join(aptEtc, "sources.list.d"), { recursive: true });
  await mkdir(join(aptEtc, "trusted.gpg.d"), { recursive: true });
  await mkdir(join(withKey, "usr/share/keyrings"), { recursive: true });
  await writeFile(join(withKey, ARCHIVE_KEYRING_IN_IMAGE), "key");
  await mkdir(withoutKey, { recursive: true });
  await writeFile(join(dir, "ca.pem"), "-----BEGIN CERTIFICATE-----\n");
});
afterEach(async () => removeTree(dir));

const source = (url: string, caFile: string | null = null) => ({ url, suite: "bookworm", caFile });

describe("prepareAptEtc", () => {
  it("copies the device's sources and keys, leaves out the rest, and removes its directory after the run", async () => {
    await writeFile(join(aptEtc, "sources.list"), "deb http://mirror/debian bookworm main\n");
    await writeFile(join(aptEtc, "sources.list.d/vendor.sources"), "Types: deb\n");
    await writeFile(join(aptEtc, "sources.list.d/notes.txt"), "not a source\n");
    await writeFile(join(aptEtc, "sources.list.d/huge.list"), Buffer.alloc(2 * 1024 * 1024));
    await writeFile(join(aptEtc, "trusted.gpg.d/vendor.gpg"), "k");
    await symlink(join(aptEtc, "sources.list.d/vendor.sources"), join(aptEtc, "sources.list.d/linked.sources"));
    const prepared = await prepareAptEtc({ aptEtc, stateDir, serverSource: null, chrootRoot: withKey, etcInRoot: "/run/x/etc" });
    expect((await readdir(join(prepared.dir, "sources.list.d"))).sort()).toEqual(["linked.sources", "vendor.sources"]);
    expect(await readFile(join(prepared.dir, "sources.list"), "utf8")).toMatch(/mirror/);
    expect(await readdir(join(prepared.dir, "trusted.gpg.d"))).toEqual(["vendor.gpg"]);
    expect(prepared.skipped.sort()).toEqual(["sources.list.d/huge.list", "sources.list.d/notes.txt"]);
    expect(prepared.serverSource).toBe("none");
    await prepared.remove();
    expect(await readdir(stateDir)).toEqual([]);
  });

  it("offers the server's repository only to a tree that has its keyring", async () => {
    const offered = await prepareAptEtc({ aptEtc, stateDir, serverSource: source("http://10.0.2.2:8080/repo/apt"), chrootRoot: withKey, etcInRoot: "/run/x/etc" });
    expect(offered.serverSource).toBe("added");
    expect(await readFile(join(offered.dir, "sources.list.d", SERVER_SOURCE_FILE), "utf8")).toBe(serverSourceEntry(source("http://10.0.2.2:8080/repo/apt")));
    expect(offered.aptOptions).toEqual([]);
    const withheld = await prepareAptEtc({ aptEtc, stateDir, serverSource: source("http://10.0.2.2:8080/repo/apt"), chrootRoot: withoutKey, etcInRoot: "/run/x/etc" });
    expect(withheld.serverSource).toBe("no-keyring");
    expect(await readdir(join(withheld.dir, "sources.list.d"))).toEqual([]);
    // Two runs at once have directories of their own.
    expect(withheld.dir).not.toBe(offered.dir);
  });

  it("over https, points APT at the agent's CA for the server's host alone, and refuses a CA it cannot read", async () => {
    const prepared = await prepareAptEtc({ aptEtc, stateDir, serverSource: source("https://updates.example:8443/repo/apt", join(dir, "ca.pem")), chrootRoot: withKey, etcInRoot: "/run/x/etc" });
    expect(prepared.aptOptions).toEqual(["-o", `Acquire::https::updates.example::CaInfo=/run/x/etc/${SERVER_CA_FILE}`]);
    expect(await readFile(join(prepared.dir, SERVER_CA_FILE), "utf8")).toMatch(/BEGIN CERTIFICATE/);
    const v6 = await prepareAptEtc({ aptEtc, stateDir, serverSource: source("https://[fd00::1]:8443/repo/apt", join(dir, "ca.pem")), chrootRoot: withKey, etcInRoot: "/run/x/etc" });
    expect(v6.aptOptions).toEqual(["-o", `Acquire::https::CaInfo=/run/x/etc/${SERVER_CA_FILE}`]);
    const missing = await prepareAptEtc({ aptEtc, stateDir, serverSource: source("https://updates.example/repo/apt", join(dir, "nope.pem")), chrootRoot: withKey, etcInRoot: "/run/x/etc" }).catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(LayeringError);
    expect((missing as Error).message).toMatch(/cannot read the agent's CA .*nope\.pem \(caFile\)/);
  });

  it("removes the directories of runs whose process is gone", async () => {
    await mkdir(join(stateDir, "etc.999999999.0123abcd"), { recursive: true });
    const alive = join(stateDir, `etc.${process.pid}.89abcdef`);
    await mkdir(alive, { recursive: true });
    const prepared = await prepareAptEtc({ aptEtc, stateDir, serverSource: null, chrootRoot: withKey, etcInRoot: "/run/x/etc" });
    expect((await readdir(stateDir)).sort()).toEqual([alive.split("/").pop(), prepared.dir.split("/").pop()].sort());
  });

  it("refuses a source whose URL or suite would add lines to the sources file", () => {
    expect(() => serverSourceEntry({ url: "http://host/apt\nTrusted: yes", suite: "bookworm" })).toThrow(LayeringError);
    expect(() => serverSourceEntry({ url: "http://host/apt", suite: "bookworm\nTrusted: yes" })).toThrow(LayeringError);
  });
});
