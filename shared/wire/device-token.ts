/**
 * The MQTT password of a device: a token it signs with its identity key, naming its id, its
 * public key and a short validity window. `<base64url canonical JSON>.<base64url signature>`.
 * The server checks the signature with the key in the token, then that the key is the one it
 * has on record for the id (an unknown id becomes a pending enrollment). `enrollment`, when
 * present, proves that the device knows the fleet enrollment secret (enrollment-proof.ts).
 */
import * as z from "zod/mini";
import { describeIssues } from "../zod.ts";
import { AptOstreeError } from "../errors.ts";
import { sign, verify, type Ed25519KeyPair } from "../sign/ed25519.ts";
import { canonicalBytes } from "../sign/canonical-signature.ts";
import { parseBoundedJson } from "./bounded-json.ts";
import { decodeBase64UrlStrict, ED25519_PUBLIC_KEY_BASE64, ED25519_SIGNATURE_BASE64URL } from "./base64.ts";
import { ENROLLMENT_PROOF_PATTERN, enrollmentProof } from "./enrollment-proof.ts";
import { NAME_PATTERN } from "./topics.ts";

/** A token is five short fields: anything longer is not one. */
export const MAX_TOKEN_LENGTH = 1024;

export const DeviceTokenSchema = z.strictObject({
  deviceId: z.string().check(z.regex(NAME_PATTERN, "is not a valid device id")),
  publicKey: z.string().check(z.regex(ED25519_PUBLIC_KEY_BASE64, "is not a base64 ed25519 public key")),
  issued: z.iso.datetime({ offset: true }),
  expires: z.iso.datetime({ offset: true }),
  enrollment: z.optional(z.string().check(z.regex(ENROLLMENT_PROOF_PATTERN, "is not an enrollment proof (base64url HMAC-SHA256)"))),
});

export type DeviceToken = z.infer<typeof DeviceTokenSchema>;

export class DeviceTokenError extends AptOstreeError {
  constructor(reason: string) {
    super("E_DEVICE_TOKEN", `device token rejected: ${reason}`);
  }
}

/** Tokens may not claim to live longer than this (a stolen token is short-lived). */
export const MAX_TOKEN_LIFETIME_SECONDS = 3600;
/** Tolerated clock difference between device and server. */
export const CLOCK_SKEW_SECONDS = 300;

/** With `enrollmentSecret`, the token carries the proof that the device knows it (for auto-accept). */
export function createDeviceToken(deviceId: string, key: Ed25519KeyPair, now: Date, lifetimeSeconds = 900, enrollmentSecret: Uint8Array | null = null): string {
  const publicKey = Buffer.from(key.publicKey).toString("base64");
  const token: DeviceToken = {
    deviceId,
    publicKey,
    issued: now.toISOString(),
    expires: new Date(now.getTime() + lifetimeSeconds * 1000).toISOString(),
    ...(enrollmentSecret ? { enrollment: enrollmentProof(enrollmentSecret, deviceId, publicKey) } : {}),
  };
  const bytes = canonicalBytes(token);
  return `${Buffer.from(bytes).toString("base64url")}.${Buffer.from(sign(bytes, key.seed)).toString("base64url")}`;
}

/** Checks shape, signature (by the key inside) and validity window; returns the token and its key. */
export function verifyDeviceToken(text: string, now: Date): { token: DeviceToken; publicKey: Uint8Array } {
  if (text.length > MAX_TOKEN_LENGTH) throw new DeviceTokenError(`longer than ${MAX_TOKEN_LENGTH} characters`);
  const [body, signature, extra] = text.split(".");
  if (!body || !signature || extra !== undefined) throw new DeviceTokenError("not '<payload>.<signature>'");
  if (!ED25519_SIGNATURE_BASE64URL.test(signature)) throw new DeviceTokenError("the signature is not 64 bytes in canonical base64url");
  const payload = decodeBase64UrlStrict(body);
  if (!payload) throw new DeviceTokenError("the payload is not canonical base64url");
  let parsed: unknown;
  try {
    parsed = parseBoundedJson(Buffer.from(payload), { maxBytes: MAX_TOKEN_LENGTH, maxDepth: 1, maxNodes: 6 });
  } catch {
    throw new DeviceTokenError("the payload is not base64url JSON");
  }
  const result = DeviceTokenSchema.safeParse(parsed);
  if (!result.success) throw new DeviceTokenError(describeIssues(result.error.issues));
  const token = result.data;
  // One spelling only: the signature covers the canonical JSON, so any other JSON of the same token is refused.
  if (!Buffer.from(payload).equals(Buffer.from(canonicalBytes(token)))) throw new DeviceTokenError("the payload is not the token's canonical JSON");
  const publicKey = new Uint8Array(Buffer.from(token.publicKey, "base64"));
  if (!verify(new Uint8Array(Buffer.from(signature, "base64url")), canonicalBytes(token), publicKey)) {
    throw new DeviceTokenError("the signature does not verify with the token's key");
  }
  const issued = Date.parse(token.issued);
  const expires = Date.parse(token.expires);
  if (issued - CLOCK_SKEW_SECONDS * 1000 > now.getTime()) throw new DeviceTokenError(`issued in the future (${token.issued}); check the device clock`);
  if (expires <= now.getTime()) throw new DeviceTokenError(`expired at ${token.expires} (the server's time is ${now.toISOString()}: a device clock behind makes its tokens expired)`);
  if (expires - issued > MAX_TOKEN_LIFETIME_SECONDS * 1000) throw new DeviceTokenError(`lives longer than ${MAX_TOKEN_LIFETIME_SECONDS} s`);
  return { token, publicKey };
}
