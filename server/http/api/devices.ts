/** /api/v1/devices: the fleet as the store knows it; enrollment (preauthorize, accept, reject, revoke, rekey), groups, tags, deletion. */
import { z } from "zod";
import { NAME_PATTERN } from "../../../shared/wire/topics.ts";
import { ED25519_PUBLIC_KEY_BASE64 } from "../../../shared/wire/base64.ts";
import { EnrollmentConflictError, type DeviceAdmin } from "../../fleet/device-admin.ts";
import type { DeviceRecord, FleetStore } from "../../fleet/store.ts";
import { HttpError } from "../http-error.ts";

export async function listDevices(store: FleetStore): Promise<{ devices: DeviceRecord[] }> {
  return { devices: await store.listDevices() };
}

export async function getDevice(store: FleetStore, id: string): Promise<{ device: DeviceRecord; events: Awaited<ReturnType<FleetStore["deviceEvents"]>> }> {
  const device = await store.getDevice(id);
  if (!device) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}'`);
  return { device, events: await store.deviceEvents(id, 100) };
}

export async function acceptDevice(store: FleetStore, admin: DeviceAdmin, id: string): Promise<{ device: DeviceRecord }> {
  if (!await store.getDevice(id)) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}': it must connect once to enroll, or be preauthorized (POST /api/v1/devices)`);
  return { device: await conflicts(() => admin.accept(id)) };
}

/** Refuses the device from now on and ends its connection; it stays listed as rejected. */
export async function rejectDevice(store: FleetStore, admin: DeviceAdmin, id: string): Promise<{ device: DeviceRecord }> {
  if (!await store.getDevice(id)) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}'`);
  return { device: await conflicts(() => admin.reject(id)) };
}

/** Refuses the device for good, bars its key under any id, ends its connection; it stays listed as revoked. */
export async function revokeDevice(store: FleetStore, admin: DeviceAdmin, id: string): Promise<{ device: DeviceRecord }> {
  if (!await store.getDevice(id)) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}'`);
  return { device: await admin.revoke(id) };
}

/** base64 of a raw 32-byte ed25519 public key, as device tokens carry it. */
const PublicKeySchema = z.string().regex(ED25519_PUBLIC_KEY_BASE64, "is not a base64 ed25519 public key (44 characters ending in '=')");
const GroupsSchema = z.array(z.string().regex(NAME_PATTERN, "groups are lowercase letters, digits, '.', '_' or '-'")).max(32);

export const PreauthorizeSchema = z.object({ id: z.string().regex(NAME_PATTERN, "is not a device id (lowercase letters, digits, '.', '_' or '-')"), publicKey: PublicKeySchema, groups: GroupsSchema.default([]) }).strict();
export const RekeySchema = z.object({ publicKey: PublicKeySchema }).strict();
export const GroupsBodySchema = z.object({ groups: GroupsSchema }).strict();

/** A device admitted at its first connection with exactly this key (Mender's preauthorization). */
export async function preauthorizeDevice(admin: DeviceAdmin, body: unknown): Promise<{ device: DeviceRecord }> {
  const input = parseBody(PreauthorizeSchema, body, "E_BAD_PREAUTHORIZATION");
  return { device: await conflicts(() => admin.preauthorize(input.id, input.publicKey, input.groups)) };
}

/** Replaces the device's key; the old one is refused from now on. */
export async function rekeyDevice(store: FleetStore, admin: DeviceAdmin, id: string, body: unknown): Promise<{ device: DeviceRecord }> {
  const input = parseBody(RekeySchema, body, "E_BAD_KEY");
  if (!await store.getDevice(id)) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}'`);
  return { device: await conflicts(() => admin.rekey(id, input.publicKey)) };
}

/** Replaces the operator-assigned groups that rollout selectors (`group=`) match. */
export async function setDeviceGroups(store: FleetStore, admin: DeviceAdmin, id: string, body: unknown): Promise<{ device: DeviceRecord }> {
  const input = parseBody(GroupsBodySchema, body, "E_BAD_GROUPS");
  if (!await store.getDevice(id)) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}'`);
  return { device: await admin.setGroups(id, input.groups) };
}

function parseBody<T>(schema: z.ZodType<T>, body: unknown, code: string): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw new HttpError(400, code, `${issue.path.join(".") || "body"}: ${issue.code === "unrecognized_keys" ? `unknown field ${issue.keys.join(", ")}` : issue.message}`);
}

async function conflicts<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof EnrollmentConflictError) throw new HttpError(409, error.code, error.message);
    throw error;
  }
}

/** Forgets the device, its history and its retained messages; answers with the record as it was. */
export async function deleteDevice(store: FleetStore, admin: DeviceAdmin, id: string): Promise<{ device: DeviceRecord }> {
  if (!await store.getDevice(id)) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}'`);
  return { device: await admin.remove(id) };
}

export const TagsSchema = z.object({ tags: z.array(z.string().regex(NAME_PATTERN, "tags are lowercase letters, digits, '.', '_' or '-'")).max(32) }).strict();

/** Replaces the operator-set tags that rollout selectors (`tag=`) match. */
export async function setDeviceTags(store: FleetStore, id: string, body: unknown): Promise<{ device: DeviceRecord }> {
  const parsed = TagsSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new HttpError(400, "E_BAD_TAGS", `${issue.path.join(".") || "body"}: ${issue.code === "unrecognized_keys" ? `unknown field ${issue.keys.join(", ")}` : issue.message}`);
  }
  if (!await store.getDevice(id)) throw new HttpError(404, "E_DEVICE_NOT_FOUND", `no device '${id}'`);
  return { device: await store.setDeviceTags(id, parsed.data.tags) };
}
