/**
 * Who may connect: a device whose MQTT client id and username are its id and whose password is
 * a valid token (shared/wire/device-token.ts) signed by the key on record. An unknown id is
 * recorded as pending and refused until an operator accepts it (or auto-accept is on).
 */
import { verifyDeviceToken } from "../../shared/wire/device-token.ts";
import type { FleetStore } from "../fleet/store.ts";

export type ConnectDecision =
  | { ok: true; deviceId: string }
  | { ok: false; returnCode: 4 | 5; reason: string };

export interface ConnectAttempt {
  clientId: string;
  username: string | undefined;
  password: Buffer | undefined;
}

export function authenticateDevice(store: FleetStore, attempt: ConnectAttempt, now: Date, autoAccept: boolean): ConnectDecision {
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
  let device = store.getDevice(token.deviceId);
  if (device && device.publicKey !== token.publicKey) return { ok: false, returnCode: 4, reason: `token key differs from the key '${token.deviceId}' enrolled with` };
  if (!device) device = store.enrollPending(token.deviceId, token.publicKey, now);
  if (device.enrollment === "pending" && autoAccept) device = store.acceptDevice(device.id, now);
  if (device.enrollment !== "accepted") return { ok: false, returnCode: 5, reason: `device '${device.id}' is ${device.enrollment}; accept it first` };
  return { ok: true, deviceId: device.id };
}
