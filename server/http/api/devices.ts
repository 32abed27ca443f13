/** /api/v1/devices: the fleet as the store knows it, enrollment, rejection and deletion. */
import { z } from "zod";
import { NAME_PATTERN } from "../../../shared/wire/topics.ts";
import type { DeviceAdmin } from "../../fleet/device-admin.ts";
import type { DeviceRecord, FleetStore } from "../../fleet/store.ts";
import { HttpError } from "../http-error.ts";

export function listDevices(store: FleetStore): { devices: DeviceRecord[] } {
  return { devices: store.listDevices() };
}

export function getDevice(store: FleetStore, id: string): { device: DeviceRecord; events: ReturnType<FleetStore["deviceEvents"]> } {
  const device = store.getDevice(id);
  if (!device) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}'`);
  return { device, events: store.deviceEvents(id, 100) };
}

export function acceptDevice(store: FleetStore, id: string, now: Date): { device: DeviceRecord } {
  if (!store.getDevice(id)) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}': it must connect once to enroll`);
  return { device: store.acceptDevice(id, now) };
}

/** Refuses the device from now on and ends its connection; it stays listed as rejected. */
export function rejectDevice(store: FleetStore, admin: DeviceAdmin, id: string): { device: DeviceRecord } {
  if (!store.getDevice(id)) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}'`);
  return { device: admin.reject(id) };
}

/** Forgets the device, its history and its retained messages; answers with the record as it was. */
export async function deleteDevice(store: FleetStore, admin: DeviceAdmin, id: string): Promise<{ device: DeviceRecord }> {
  if (!store.getDevice(id)) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}'`);
  return { device: await admin.remove(id) };
}

export const TagsSchema = z.object({ tags: z.array(z.string().regex(NAME_PATTERN, "tags are lowercase letters, digits, '.', '_' or '-'")).max(32) }).strict();

/** Replaces the operator-set tags that rollout selectors (`tag=`) match. */
export function setDeviceTags(store: FleetStore, id: string, body: unknown): { device: DeviceRecord } {
  const parsed = TagsSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new HttpError(400, "E_BAD_TAGS", `${issue.path.join(".") || "body"}: ${issue.code === "unrecognized_keys" ? `unknown field ${issue.keys.join(", ")}` : issue.message}`);
  }
  if (!store.getDevice(id)) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}'`);
  return { device: store.setDeviceTags(id, parsed.data.tags) };
}
