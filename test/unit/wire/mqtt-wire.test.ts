import { describe, expect, it } from "vitest";
import { anyOf } from "../../../shared/trust/signers.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { signCommand, verifyCommand, CommandRejectedError, type Command } from "../../../shared/wire/command.ts";
import { createDeviceToken, verifyDeviceToken, DeviceTokenError } from "../../../shared/wire/device-token.ts";
import { signReport, verifyReport, ReportRejectedError, type Report } from "../../../shared/wire/report.ts";
import { deviceTopic, groupCommandTopic, parseTopic } from "../../../shared/wire/topics.ts";
import { signManifest, type Manifest } from "../../../shared/wire/manifest.ts";
import { MAX_SIGNATURES, signCanonical, verifyCanonical, type SignatureEntry } from "../../../shared/sign/canonical-signature.ts";
import { keyId } from "../../../shared/sign/ed25519.ts";

const P = "apt-ostree/";
const now = new Date("2026-11-21T12:00:00Z");
const device = generateKeyPair();
const server = generateKeyPair();

describe("topics", () => {
  it.each([
    [deviceTopic(P, "dev-1", "state"), { scope: "device", deviceId: "dev-1", kind: "state" }],
    [deviceTopic(P, "dev-1", "cmd"), { scope: "device", deviceId: "dev-1", kind: "cmd" }],
    [groupCommandTopic(P, "lab"), { scope: "group", group: "lab", kind: "cmd" }],
    ["apt-ostree/devices/+/state", null],
    ["apt-ostree/devices/dev-1/state/extra", null],
    ["apt-ostree/groups/lab/state", null],
    ["other/devices/dev-1/state", null],
  ])("parses %s", (topic, expected) => {
    expect(parseTopic(P, topic)).toEqual(expected);
  });
});

describe("device tokens (the MQTT password)", () => {
  it("verifies a fresh token and returns the key inside", () => {
    const { token, publicKey } = verifyDeviceToken(createDeviceToken("dev-1", device, now), now);
    expect(token.deviceId).toBe("dev-1");
    expect(publicKey).toEqual(device.publicKey);
  });

  it.each([
    ["an expired token", () => createDeviceToken("dev-1", device, new Date(now.getTime() - 3600_000), 600), /expired at/],
    ["a token issued in the future", () => createDeviceToken("dev-1", device, new Date(now.getTime() + 3600_000), 600), /issued in the future/],
    ["a token that lives too long", () => createDeviceToken("dev-1", device, now, 7200), /lives longer than 3600 s/],
    ["a token with a bad id", () => createDeviceToken("Dev/1", device, now), /deviceId: is not a valid device id/],
    ["garbage", () => "garbage", /not '<payload>.<signature>'/],
    [
      "a token whose payload was changed",
      () => {
        const [body, sig] = createDeviceToken("dev-1", device, now).split(".");
        const payload = JSON.parse(Buffer.from(body!, "base64url").toString());
        payload.deviceId = "dev-2";
        return `${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${sig}`;
      },
      /signature does not verify/,
    ],
    // Node's decoder skips characters outside the alphabet: the server fuzzer enrolled a stranger
    // whose token had bytes inserted into its signature.
    ["a signature with bytes inserted", () => createDeviceToken("dev-1", device, now).replace(/\.(.{10})/, ".$1\u00fe\u001d"), /signature is not 64 bytes in canonical base64url/],
    ["a signature spelled another way (unused bits set)", () => respellLast(createDeviceToken("dev-1", device, now)), /signature is not 64 bytes in canonical base64url/],
    ["a payload with bytes inserted", () => createDeviceToken("dev-1", device, now).replace(/^(.{10})/, "$1*"), /payload is not canonical base64url/],
    [
      "the same token in other JSON (keys reordered)",
      () => {
        const [body, sig] = createDeviceToken("dev-1", device, now).split(".");
        const fields = JSON.parse(Buffer.from(body!, "base64url").toString()) as Record<string, string>;
        const reordered = Object.fromEntries(Object.entries(fields).reverse());
        return `${Buffer.from(JSON.stringify(reordered, null, 1)).toString("base64url")}.${sig}`;
      },
      /payload is not the token's canonical JSON/,
    ],
  ])("rejects %s", (_what, make, message) => {
    expect(() => verifyDeviceToken(make(), now)).toThrow(DeviceTokenError);
    expect(() => verifyDeviceToken(make(), now)).toThrow(message);
  });
});

/** The token with its signature's last character changed in the bits the decoder ignores. */
function respellLast(token: string): string {
  const last = token.at(-1)!;
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  return token.slice(0, -1) + alphabet[alphabet.indexOf(last) ^ 1];
}

describe("signed device reports", () => {
  const report: Report = { deviceId: "dev-1", counter: 7, sent: now.toISOString(), state: "healthy", booted: { commit: "a".repeat(64), version: "2" } };
  const expectDev = { deviceId: "dev-1", publicKey: device.publicKey, lastCounter: 6 };

  it("accepts a report signed by the device with a higher counter", () => {
    expect(verifyReport(signReport(report, device), expectDev)).toEqual(report);
  });

  it("carries the booted release's package layering, bounded", () => {
    const layered = { ...report, booted: { ...report.booted!, layered: { packages: ["htop", "libstdc++6"], removed: ["nano"], replaced: [] } } };
    expect(verifyReport(signReport(layered, device), expectDev)).toEqual(layered);
    const many = { ...report, booted: { ...report.booted!, layered: { packages: Array.from({ length: 65 }, (_, i) => `p${i}`), removed: [], replaced: [] } } };
    expect(() => verifyReport(signReport(many, device), expectDev)).toThrow(/layered/);
    const odd = { ...report, booted: { ...report.booted!, layered: { packages: ["Not A Name"], removed: [], replaced: [] } } };
    expect(() => verifyReport(signReport(odd, device), expectDev)).toThrow(ReportRejectedError);
  });

  it.each([
    ["a replayed counter", () => signReport(report, device), { lastCounter: 7 }, "E_REPORT_REPLAY"],
    ["another device's signature", () => signReport(report, generateKeyPair()), {}, "E_REPORT_SIGNATURE"],
    ["a report naming another device", () => signReport({ ...report, deviceId: "dev-2" }, device), {}, "E_REPORT_WRONG_DEVICE"],
    ["a tampered report", () => signReport(report, device).replace('"healthy"', '"failed"'), {}, "E_REPORT_SIGNATURE"],
    ["an unsigned report", () => JSON.stringify({ report }), {}, "E_REPORT_MALFORMED"],
    ["a report with an unknown state", () => signReport({ ...report, state: "dancing" as never }, device), {}, "E_REPORT_MALFORMED"],
    ["a signature with bytes inserted", () => signReport(report, device).replace(/"sig":"(.{10})/, '"sig":"$1\u00fe'), {}, "E_REPORT_MALFORMED"],
  ])("rejects %s", (_what, make, override, code) => {
    const attempt = () => verifyReport(make(), { ...expectDev, ...override });
    expect(attempt).toThrow(ReportRejectedError);
    try {
      attempt();
    } catch (error) {
      expect((error as ReportRejectedError).code).toBe(code);
    }
  });
});

describe("signed commands", () => {
  const manifest = { schema: 1, ref: "r", commit: "a".repeat(64), version: "2", sequence: 2, architecture: "amd64", channel: "stable", issued: now.toISOString(), expires: now.toISOString(), downgrade: false, deltas: [] } satisfies Manifest;
  const command: Command = { type: "update", id: "cmd-1", device: "dev-1", issued: now.toISOString(), rollout: "r-1", manifest: signManifest(manifest, [server]) };

  it("accepts a command signed by a pinned server key", () => {
    expect(verifyCommand(signCommand(command, [server]), anyOf([server.publicKey]))).toEqual(command);
  });

  it("accepts an update command that names a static host for the repo (serve --repo-url), under the signature", () => {
    const elsewhere = { ...command, repo: "https://cdn.example/fleet/repo" };
    expect(verifyCommand(signCommand(elsewhere, [server]), anyOf([server.publicKey]))).toEqual(elsewhere);
    expect(() => verifyCommand(signCommand(elsewhere, [server]).replace("cdn.example", "evil.example"), anyOf([server.publicKey]))).toThrow(/signature does not verify/);
  });

  it.each([
    ["an unknown key", () => signCommand(command, [generateKeyPair()]), /signed only by unknown keys/],
    ["a tampered command", () => signCommand(command, [server]).replace('"cmd-1"', '"cmd-2"'), /signature does not verify/],
    ["a malformed command", () => signCommand({ type: "format-disk", id: "x", issued: now.toISOString() } as never, [server]), /malformed command/],
    ["a command that names no device", () => signCommand({ type: "update", id: "cmd-1", issued: now.toISOString(), manifest: command.manifest } as never, [server]), /malformed command: device: /],
    ["non-JSON", () => "{", /not JSON/],
    ["a repo that is not an http(s) URL", () => signCommand({ ...command, repo: "file:///etc" }, [server]), /malformed command: repo: /],
    ["a repo URL of 3000 characters", () => signCommand({ ...command, repo: `https://cdn.example/${"a".repeat(3000)}` }, [server]), /malformed command: repo: /],
  ])("rejects %s", (_what, make, message) => {
    expect(() => verifyCommand(make(), anyOf([server.publicKey]))).toThrow(CommandRejectedError);
    expect(() => verifyCommand(make(), anyOf([server.publicKey]))).toThrow(message);
  });

  const withSignatures = (signatures: unknown[]) => JSON.stringify({ command, signatures });
  const forged = (): SignatureEntry => ({ keyid: keyId(server.publicKey), sig: Buffer.alloc(64, 1).toString("base64") });

  it(`accepts up to ${MAX_SIGNATURES} signatures, the pinned key's among them`, () => {
    const others = Array.from({ length: MAX_SIGNATURES - 1 }, () => generateKeyPair());
    expect(verifyCommand(signCommand(command, [...others, server]), anyOf([server.publicKey]))).toEqual(command);
  });

  it.each([
    // Hundreds fit the 64 KiB a command may take; each names the pinned key, so each used to cost a verification.
    ["hundreds of signatures", () => withSignatures(Array.from({ length: 300 }, forged)), `malformed command envelope: signatures: at most ${MAX_SIGNATURES} signatures`],
    [`${MAX_SIGNATURES + 1} good signatures`, () => signCommand(command, Array.from({ length: MAX_SIGNATURES + 1 }, () => server)), `malformed command envelope: signatures: at most ${MAX_SIGNATURES} signatures`],
    ["no signature", () => withSignatures([]), "malformed command envelope: signatures: at least one signature"],
    ["a signature that is not 88 characters of base64", () => withSignatures([{ ...forged(), sig: "A".repeat(4000) }]), "malformed command envelope: signatures.0.sig: must be a 64-byte ed25519 signature in base64 (88 characters)"],
    ["a key id that is not 64 hex digits", () => withSignatures([{ ...forged(), keyid: "k".repeat(1000) }]), "malformed command envelope: signatures.0.keyid: must be 64 lowercase hex digits"],
  ])("refuses %s at the envelope, before verifying any", (_what, make, message) => {
    expect(() => verifyCommand(make(), anyOf([server.publicKey]))).toThrow(message);
  });
});

describe("canonical signatures", () => {
  /** Entries whose `sig` counts its reads: verifyCanonical reads it once per verification. */
  function counted(entries: SignatureEntry[]): { entries: SignatureEntry[]; verified: () => number } {
    let reads = 0;
    const wrapped = entries.map((entry) => ({
      keyid: entry.keyid,
      get sig() {
        reads++;
        return entry.sig;
      },
    }));
    return { entries: wrapped, verified: () => reads };
  }

  it("verifies each pinned key once and no more than MAX_SIGNATURES entries, however many it is given", () => {
    const other = generateKeyPair();
    const bad = Array.from({ length: 5000 }, () => ({ keyid: keyId(server.publicKey), sig: Buffer.alloc(64, 2).toString("base64") }));
    const many = counted([...bad, ...signCanonical({ a: 1 }, [server])]);
    expect(verifyCanonical({ a: 1 }, many.entries, anyOf([server.publicKey, other.publicKey]))).toEqual({ ok: false, reason: "bad-signature", keyid: keyId(server.publicKey) });
    expect(many.verified()).toBe(1);

    const unknown = Array.from({ length: 5000 }, () => ({ keyid: "f".repeat(64), sig: "" }));
    const verdict = verifyCanonical({ a: 1 }, unknown, anyOf([server.publicKey]));
    expect(verdict).toMatchObject({ ok: false, reason: "unknown-key" });
    expect((verdict as { keyids: string[] }).keyids).toHaveLength(MAX_SIGNATURES);
  });

  it("still verifies a document signed by several keys, the pinned one last", () => {
    const keys = [...Array.from({ length: MAX_SIGNATURES - 1 }, () => generateKeyPair()), server];
    const signed = counted(signCanonical({ b: 2 }, keys));
    expect(verifyCanonical({ b: 2 }, signed.entries, anyOf([server.publicKey]))).toEqual({ ok: true, keyid: keyId(server.publicKey), keyids: [keyId(server.publicKey)] });
    expect(signed.verified()).toBe(1);
  });
});
