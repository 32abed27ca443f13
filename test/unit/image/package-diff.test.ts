import { describe, expect, it } from "vitest";
import { compareDebianVersions } from "../../../shared/image/debian-version.ts";
import { diffPackages, renderPackageDiff } from "../../../shared/image/package-diff.ts";

describe("Debian version order (dpkg --compare-versions)", () => {
  it.each([
    ["1.0", "1.0", 0],
    ["1.0", "1.1", -1],
    ["1.10", "1.9", 1],
    ["1.0~rc1", "1.0", -1],
    ["1.0", "1.0+b1", -1],
    ["1:0.9", "2.0", 1],
    ["3.0.11-1~deb12u2", "3.0.13-1~deb12u1", -1],
    ["2.36-9+deb12u4", "2.36-9+deb12u14", -1],
    ["1.0a", "1.0+", -1],
    ["1.0-1", "1.0-1~bpo1", 1],
  ])("%s vs %s is %i", (a, b, expected) => {
    expect(Math.sign(compareDebianVersions(a, b))).toBe(expected);
    expect(Math.sign(compareDebianVersions(b, a))).toBe(0 - expected);
  });
});

describe("package diff", () => {
  const from = [
    { name: "openssl", version: "3.0.11-1~deb12u2", architecture: "amd64" },
    { name: "bash", version: "5.2.15-2+b7", architecture: "amd64" },
    { name: "old", version: "1", architecture: "all" },
  ];
  const to = [
    { name: "openssl", version: "3.0.13-1~deb12u1", architecture: "amd64" },
    { name: "bash", version: "5.2.15-2+b2", architecture: "amd64" },
    { name: "curl", version: "7.88.1-10+deb12u8", architecture: "amd64" },
  ];

  it("sorts changes into upgraded, downgraded, removed and added", () => {
    expect(diffPackages(from, to)).toEqual({
      upgraded: [{ name: "openssl", architecture: "amd64", from: "3.0.11-1~deb12u2", to: "3.0.13-1~deb12u1" }],
      downgraded: [{ name: "bash", architecture: "amd64", from: "5.2.15-2+b7", to: "5.2.15-2+b2" }],
      removed: [{ name: "old", version: "1", architecture: "all" }],
      added: [{ name: "curl", version: "7.88.1-10+deb12u8", architecture: "amd64" }],
    });
  });

  it("renders rpm-ostree's sections", () => {
    expect(renderPackageDiff(diffPackages(from, to))).toBe(
      "Upgraded:\n  openssl 3.0.11-1~deb12u2 -> 3.0.13-1~deb12u1\nDowngraded:\n  bash 5.2.15-2+b7 -> 5.2.15-2+b2\nRemoved:\n  old-1.all\nAdded:\n  curl-7.88.1-10+deb12u8.amd64\n",
    );
    expect(renderPackageDiff(diffPackages(from, from))).toBe("No package changes.\n");
  });
});
