/** /api/v1/devices: the fleet as the store knows it, and enrollment. */
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
