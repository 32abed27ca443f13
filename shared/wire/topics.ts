/**
 * MQTT topics (DESIGN.md 3.1), under a configurable prefix (default `apt-ostree/`):
 * `devices/<id>/cmd` (server -> device), `devices/<id>/state` (device -> server),
 * `devices/<id>/online` (retained, last will), `devices/<id>/hello` (the device's signed token,
 * for enrollment through a broker the server does not run), `groups/<group>/cmd` (server -> many).
 */
export const DEFAULT_TOPIC_PREFIX = "apt-ostree/";

/** Ids and group names are single topic levels: no '/', no MQTT wildcards, no '$'. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export type DeviceTopicKind = "cmd" | "state" | "online" | "hello";

export function deviceTopic(prefix: string, deviceId: string, kind: DeviceTopicKind): string {
  return `${prefix}devices/${deviceId}/${kind}`;
}

export function groupCommandTopic(prefix: string, group: string): string {
  return `${prefix}groups/${group}/cmd`;
}

export type ParsedTopic =
  | { scope: "device"; deviceId: string; kind: DeviceTopicKind }
  | { scope: "group"; group: string; kind: "cmd" };

/** Pure: what an exact topic (no wildcards) addresses, or null when it is none of ours. */
export function parseTopic(prefix: string, topic: string): ParsedTopic | null {
  if (!topic.startsWith(prefix)) return null;
  const levels = topic.slice(prefix.length).split("/");
  if (levels.length !== 3 || !NAME_PATTERN.test(levels[1]!)) return null;
  const [scope, name, kind] = levels as [string, string, string];
  if (scope === "devices" && (kind === "cmd" || kind === "state" || kind === "online" || kind === "hello")) return { scope: "device", deviceId: name, kind };
  if (scope === "groups" && kind === "cmd") return { scope: "group", group: name, kind };
  return null;
}
