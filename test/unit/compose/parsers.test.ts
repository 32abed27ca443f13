import { describe, expect, it } from "vitest";
import { parseMissingPackages, parseSimulatedInstalls, parseSimulation } from "../../../shared/apt/simulate.ts";
import { parseDpkgStatus } from "../../../shared/apt/dpkg-status.ts";
import { segmentPattern } from "../../../server/compose/glob.ts";
import { escapeTmpfilesPath, tmpfilesLine } from "../../../shared/image/tmpfiles.ts";
import { nextVersion } from "../../../server/compose/version.ts";

describe("apt-get output", () => {
  it("finds every package APT cannot locate", () => {
    const stderr = "E: Unable to locate package nope\nE: Unable to locate package gone2\nE: Package 'virtual' has no installation candidate\n";
    expect(parseMissingPackages(stderr)).toEqual(["nope", "gone2", "virtual"]);
  });

  it("reads the packages of a simulated install", () => {
    const stdout = "NOTE: This is only a simulation!\nInst libc6 (2.36-9+deb12u14 Debian:12.12/stable, Debian-Security:12/stable-security [amd64])\nInst tzdata (2025b-0+deb12u2 Debian:12.12/stable [all])\nConf libc6 (2.36-9)\n";
    expect(parseSimulatedInstalls(stdout)).toEqual([
      { name: "libc6", version: "2.36-9+deb12u14", architecture: "amd64" },
      { name: "tzdata", version: "2025b-0+deb12u2", architecture: "all" },
    ]);
  });

  it("tells an upgrade of an installed package and a removal from a new install", () => {
    const stdout = "Remv nano [7.2-1]\nPurg oddity\nInst libcurl4 [7.88.1-10+deb12u5] (7.88.1-10+deb12u14 Debian:12.12/stable [amd64]) []\nInst curl (7.88.1-10+deb12u14 Debian:12.12/stable [amd64])\n";
    expect(parseSimulation(stdout)).toEqual({
      installs: [
        { name: "libcurl4", version: "7.88.1-10+deb12u14", architecture: "amd64", replaces: "7.88.1-10+deb12u5" },
        { name: "curl", version: "7.88.1-10+deb12u14", architecture: "amd64", replaces: null },
      ],
      removals: [{ name: "nano", version: "7.2-1" }, { name: "oddity", version: null }],
    });
  });
});

describe("dpkg status", () => {
  it("lists installed packages by name and skips removed ones", () => {
    const status = [
      "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:1.2.13.dfsg-1\nDescription: x\n more",
      "Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1",
      "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b7",
    ].join("\n\n");
    expect(parseDpkgStatus(status)).toEqual([
      { name: "bash", version: "5.2.15-2+b7", architecture: "amd64" },
      { name: "zlib1g", version: "1:1.2.13.dfsg-1", architecture: "amd64" },
    ]);
  });
});

describe("versions", () => {
  it.each([
    [null, "1"],
    ["1", "2"],
    ["2026.11.9", "2026.11.10"],
    ["v007", "v008"],
    ["1.0-beta", "1.0-beta.1"],
  ])("after %s comes %s", (previous, next) => {
    expect(nextVersion(previous)).toBe(next);
  });
});

describe("tmpfiles.d lines", () => {
  it.each([
    [{ kind: "dir", path: "/var/lib/x", mode: 0o40755, uid: 0, gid: 8 } as const, "d /var/lib/x 0755 0 8 -"],
    [{ kind: "dir", path: "/var/roothome", mode: 0o40700, uid: 0, gid: 0 } as const, "d /var/roothome 0700 0 0 -"],
    [{ kind: "symlink", path: "/var/run", target: "/run" } as const, "L /var/run - - - - /run"],
    [{ kind: "file", path: "/var/lib/a b" } as const, "C /var/lib/a\\x20b - - - -"],
  ])("renders %o", (entry, line) => {
    expect(tmpfilesLine(entry)).toBe(line);
  });

  it("escapes backslashes before whitespace", () => {
    expect(escapeTmpfilesPath("/a\\b\tc")).toBe("/a\\\\b\\x09c");
  });
});

describe("remove-files patterns", () => {
  it.each([
    ["*", "6.1.0-56-amd64", true],
    ["6.1.*", "6.1.0", true],
    ["6.1.*", "6x1.0", false],
    ["?", "ab", false],
    ["a+b", "a+b", true],
  ])("%s matches %s: %s", (pattern, name, matches) => {
    expect(segmentPattern(pattern).test(name)).toBe(matches);
  });
});

describe("tmpfiles round trip", () => {
  it("reads back the entries renderTmpfiles wrote, odd paths and all", async () => {
    const { renderTmpfiles, parseTmpfiles } = await import("../../../shared/image/tmpfiles.ts");
    const entries = [
      { kind: "dir" as const, path: "/var/lib/my dir\\x", mode: 0o2755, uid: 0, gid: 50 },
      { kind: "symlink" as const, path: "/var/lib/dpkg", target: "../../usr/share/dpkg/database" },
      { kind: "file" as const, path: "/var/cache/debconf/config.dat" },
    ];
    expect(parseTmpfiles(renderTmpfiles(entries))).toEqual(entries);
  });
});
