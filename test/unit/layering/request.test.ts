import { describe, expect, it } from "vitest";
import { emptyLayerRequest, type LayerRequest } from "../../../shared/image/layer-metadata.ts";
import type { PackageEntry } from "../../../shared/image/commit-metadata.ts";
import {
  inactiveRequests, installLocalPackages, installPackages, LayerRequestError, MAX_REQUEST_ENTRIES, overrideRemove, overrideReplace, overrideReset, uninstallAll, uninstallPackages,
} from "../../../device/layering/request.ts";

const base = new Map<string, PackageEntry>([
  ["bash", { name: "bash", version: "5.2.15-2+b7", architecture: "amd64" }],
  ["nano", { name: "nano", version: "7.2-1", architecture: "amd64" }],
]);
const plain = { idempotent: false, allowInactive: false };
const deb = (name: string, sha = "a") => ({ name, version: "1.0-1", architecture: "amd64", sha256: sha.repeat(64) });
const request = (extra: Partial<LayerRequest> = {}): LayerRequest => ({ ...emptyLayerRequest(), ...extra });

describe("install and uninstall", () => {
  it("accumulates requests, sorted, once each, and says when nothing changed", () => {
    const first = installPackages(request(), ["jq", "curl", "jq"], base, plain);
    expect(first).toEqual({ changed: true, request: request({ packages: ["curl", "jq"] }) });
    const second = installPackages(first.request, ["htop"], base, plain);
    expect(second.request.packages).toEqual(["curl", "htop", "jq"]);
    expect(installPackages(second.request, ["jq"], base, { ...plain, idempotent: true })).toEqual({ changed: false, request: second.request });
  });

  it("refuses with rpm-ostree's words: already requested, already in the base", () => {
    const withCurl = request({ packages: ["curl"] });
    expect(() => installPackages(withCurl, ["curl"], base, plain)).toThrow("Package 'curl' is already requested");
    expect(() => installPackages(withCurl, ["nano"], base, plain)).toThrow('"nano" is already provided by: nano 7.2-1. Use --allow-inactive to explicitly require it.');
    const inactive = installPackages(withCurl, ["nano"], base, { ...plain, allowInactive: true }).request;
    expect(inactive.packages).toEqual(["curl", "nano"]);
    expect(inactiveRequests(inactive, base)).toEqual(["nano"]);
    // Once the base's nano is overridden away, a request for it is active again.
    expect(inactiveRequests({ ...inactive, baseRemovals: ["nano"] }, base)).toEqual([]);
  });

  it.each([["Curl"], ["-x"], ["a"], ["curl;rm"], ["x".repeat(101)], ["../etc"], [""], ["nano-"], ["nano."]])("refuses %j as a package name", (name) => {
    expect(() => installPackages(request(), [name], base, plain)).toThrow(LayerRequestError);
    expect(() => installPackages(request(), [name], base, plain)).toThrow(/is not a Debian package name/);
  });

  it("takes names with '+' and '.', g++ and libstdc++6 among them", () => {
    expect(installPackages(request(), ["g++", "libstdc++6", "python3.11"], base, plain).request.packages).toEqual(["g++", "libstdc++6", "python3.11"]);
  });

  it("bounds how many names one request takes", () => {
    const names = Array.from({ length: MAX_REQUEST_ENTRIES + 1 }, (_, i) => `p${i}x`);
    expect(() => installPackages(request(), names, base, plain)).toThrow(`at most ${MAX_REQUEST_ENTRIES} packages at once`);
  });

  it("uninstalls requested and local packages by name; refuses one not requested unless idempotent", () => {
    const before = request({ packages: ["curl", "jq"], localPackages: [deb("tool")] });
    expect(uninstallPackages(before, ["jq", "tool"], { idempotent: false }).request).toEqual(request({ packages: ["curl"] }));
    expect(() => uninstallPackages(before, ["htop"], { idempotent: false })).toThrow("Package/capability 'htop' is not currently requested");
    expect(uninstallPackages(before, ["htop"], { idempotent: true })).toEqual({ changed: false, request: before });
    expect(uninstallAll(before).request).toEqual(request());
  });

  it("layers a local .deb once, and sends a base package to override replace", () => {
    const one = installLocalPackages(request(), [deb("tool")], base, plain).request;
    expect(one.localPackages).toEqual([deb("tool")]);
    expect(() => installLocalPackages(one, [deb("tool", "b")], base, plain)).toThrow("Package 'tool' is already layered");
    expect(installLocalPackages(one, [deb("tool")], base, { ...plain, idempotent: true }).changed).toBe(false);
    expect(() => installLocalPackages(request(), [deb("bash")], base, plain)).toThrow(/use 'override replace'/);
  });
});

describe("overrides", () => {
  it("removes and replaces base packages only, once each, and resets them", () => {
    const removed = overrideRemove(request(), ["nano"], base).request;
    expect(removed.baseRemovals).toEqual(["nano"]);
    expect(() => overrideRemove(removed, ["nano"], base)).toThrow("Override already exists for package 'nano'");
    expect(() => overrideRemove(request(), ["curl"], base)).toThrow(/'curl' is not in the base/);
    const replaced = overrideReplace(removed, [deb("bash")], base).request;
    expect(replaced.baseLocalReplacements).toEqual([deb("bash")]);
    expect(() => overrideReplace(replaced, [deb("nano")], base)).toThrow("Override already exists for package 'nano'");
    expect(() => overrideReplace(request(), [deb("tool")], base)).toThrow(/'tool' is not in the base/);
    expect(overrideReset(replaced, ["bash"]).request).toEqual(removed);
    expect(() => overrideReset(removed, ["bash"])).toThrow("No overrides for package 'bash'");
    expect(overrideReset(replaced, "all").request).toEqual(request());
  });
});
