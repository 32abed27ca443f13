/**
 * Who may connect: a device whose MQTT client id and username are its id and whose password is
 * a valid token (shared/wire/device-token.ts) signed by the key on record. An unknown id is
 * enrolled as pending (while there is room: enrollment.ts) and refused until an operator accepts
 * it (or auto-accept is on); a rejected one stays refused.
 */
import { verifyDeviceToken } from "../../shared/wire/device-token.ts";
import type { Enroll } from "./enrollment.ts";

export type ConnectDecision =
  | { ok: true; deviceId: string }
  | { ok: false; returnCode: 3 | 4 | 5; reason: string };

export interface ConnectAttempt {
  clientId: string;
  username: string | undefined;
  password: Buffer | undefined;
}

export function authenticateDevice(attempt: ConnectAttempt, now: Date, enroll: Enroll): ConnectDecision {
  if (!attempt.username || !attempt.password) return { ok: false, returnCode: 4, reason: "no username or token" };
  if (attempt.username !== attempt.clientId) return { ok: false, returnCode: 4, reason: `client id '${attempt.clientId}' is not the username '${attempt.username}'` };
  let verified;
  try {
    verified = verifyDeviceToken(attempt.password.toString("utf8"), now);
  } catch (error) {
    return { ok: false, returnCode: 4, reason: (error as Error).message };
  }
  const { token } = verified;
  if (token.deviceId !== attempt.username) return { ok: false, returnCode: 4, reason: `token is for '${token.deviceId}', not '${attempt.username}'` };
  const enrolled = enroll(token.deviceId, token.publicKey, now);
  // 3, "server unavailable": enrollment is full for now, the device may try again later.
  if (!enrolled.ok) return { ok: false, returnCode: enrolled.reason === "key-mismatch" ? 4 : 3, reason: enrolled.message };
  const { device } = enrolled;
  if (device.enrollment !== "accepted") return { ok: false, returnCode: 5, reason: `device '${device.id}' is ${device.enrollment}${device.enrollment === "pending" ? "; accept it first" : ""}` };
  return { ok: true, deviceId: device.id };
}
