/**
 * Who may connect: a device whose MQTT client id and username are its id and whose password is
 * a valid token (shared/wire/device-token.ts) signed by the key on record. An unknown id is
 * enrolled as pending (while there is room: enrollment.ts) and refused until an operator accepts
 * it (or it proves the fleet enrollment secret to auto-accept); rejected and revoked ones stay refused.
 */
import { verifyDeviceToken } from "../../shared/wire/device-token.ts";
import { pendingReason, REFUSAL_RETURN_CODE, type Enroll } from "./enrollment.ts";

export type ConnectDecision =
  | { ok: true; deviceId: string }
  | { ok: false; returnCode: 3 | 4 | 5; reason: string };

export interface ConnectAttempt {
  clientId: string;
  username: string | undefined;
  password: Buffer | undefined;
}

export async function authenticateDevice(attempt: ConnectAttempt, now: Date, enroll: Enroll): Promise<ConnectDecision> {
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
  const enrolled = await enroll({ deviceId: token.deviceId, publicKey: token.publicKey, proof: token.enrollment }, now);
  // 3, "server unavailable": enrollment is full for now, the device may try again later.
  if (!enrolled.ok) return { ok: false, returnCode: REFUSAL_RETURN_CODE[enrolled.reason], reason: enrolled.message };
  const { device } = enrolled;
  if (device.enrollment === "pending") return { ok: false, returnCode: 5, reason: pendingReason(device.id, enrolled.proof) };
  if (device.enrollment !== "accepted") return { ok: false, returnCode: 5, reason: `device '${device.id}' is ${device.enrollment}` };
  return { ok: true, deviceId: device.id };
}
