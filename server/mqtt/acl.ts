/**
 * Pure topic policy (DESIGN.md 3.1): a device publishes only its own state, online flag and hello, and
 * subscribes only to its own command topic and the command topics of the groups the operator
 * assigned it (`device.groups`; never those it reports). Exact topics only:
 * a wildcard subscription could read other devices' commands.
 */
import { parseTopic } from "../../shared/wire/topics.ts";

export function mayPublish(prefix: string, deviceId: string, topic: string): boolean {
  const parsed = parseTopic(prefix, topic);
  return parsed?.scope === "device" && parsed.deviceId === deviceId && parsed.kind !== "cmd";
}

export function maySubscribe(prefix: string, device: { id: string; groups: string[] }, topic: string): boolean {
  if (/[+#]/.test(topic)) return false;
  const parsed = parseTopic(prefix, topic);
  if (parsed?.scope === "device") return parsed.deviceId === device.id && parsed.kind === "cmd";
  if (parsed?.scope === "group") return device.groups.includes(parsed.group);
  return false;
}
