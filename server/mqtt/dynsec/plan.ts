/**
 * Pure: the mosquitto dynamic-security state the fleet store implies, and the commands that take
 * the broker there (docs/mosquitto/README.md). Every accepted device is a dynsec client named by
 * its id (its certificate's CN) holding a role of its own: mosquitto 2.0.11 substitutes no %u or
 * %c in dynsec ACLs, so each device's topics are spelled out. Each operator-assigned group is a
 * dynsec group whose role opens that group's command topic. A device that is not accepted has no
 * client: with `use_identity_as_username` mosquitto never asks dynsec about the login, so a
 * certificate always connects, and only the missing client makes every publish and subscription
 * fail (a disabled client keeps its ACLs, so disabling is not enough).
 * Only names under `apt-ostree:` are the server's; it leaves every other client, role and group alone.
 */
import { keyId } from "../../../shared/sign/ed25519.ts";
import { deviceTopic, groupCommandTopic } from "../../../shared/wire/topics.ts";

export const DEVICE_ROLE_PREFIX = "apt-ostree:device:";
export const GROUP_PREFIX = "apt-ostree:group:";
/** The role that lets the server read and write the fleet's topics; its client is the certificate CN apt-ostree:server. */
export const SERVER_ROLE = "apt-ostree:server";

export const deviceRole = (deviceId: string) => `${DEVICE_ROLE_PREFIX}${deviceId}`;
/** The dynsec group of an operator group, and its role (same name). */
export const groupName = (group: string) => `${GROUP_PREFIX}${group}`;

export interface DynsecCommand {
  command: string;
  [field: string]: unknown;
}

export interface Acl {
  acltype: "publishClientSend" | "publishClientReceive" | "subscribeLiteral" | "subscribePattern";
  topic: string;
  allow: true;
}

/** What the server wants of a device's client: the key it belongs to (so a rekey replaces it) and its groups. */
export interface WantedDevice {
  id: string;
  /** keyId of the device's key, kept in the client's textname. */
  key: string;
  groups: string[];
}

/** A dynsec client as listClients (verbose) shows it. */
export interface BrokerClient {
  username: string;
  textname?: string;
  disabled?: boolean;
  roles: string[];
  groups: string[];
}

export interface BrokerState {
  clients: BrokerClient[];
  roles: string[];
  groups: string[];
}

export function wantedDevice(device: { id: string; publicKey: string; enrollment: string; groups: string[] }): WantedDevice | null {
  if (device.enrollment !== "accepted") return null;
  return { id: device.id, key: keyId(Buffer.from(device.publicKey, "base64")).slice(0, 16), groups: [...device.groups].sort() };
}

export const textname = (key: string) => `apt-ostree device, key ${key}`;

export function deviceAcls(prefix: string, id: string): Acl[] {
  const cmd = deviceTopic(prefix, id, "cmd");
  return [
    { acltype: "publishClientSend", topic: deviceTopic(prefix, id, "state"), allow: true },
    // The agent's online flag and its last will.
    { acltype: "publishClientSend", topic: deviceTopic(prefix, id, "online"), allow: true },
    { acltype: "subscribeLiteral", topic: cmd, allow: true },
    { acltype: "publishClientReceive", topic: cmd, allow: true },
  ];
}

export function groupAcls(prefix: string, group: string): Acl[] {
  const cmd = groupCommandTopic(prefix, group);
  return [
    { acltype: "subscribeLiteral", topic: cmd, allow: true },
    { acltype: "publishClientReceive", topic: cmd, allow: true },
  ];
}

export function serverAcls(prefix: string): Acl[] {
  return [
    { acltype: "publishClientSend", topic: `${prefix}#`, allow: true },
    { acltype: "publishClientReceive", topic: `${prefix}#`, allow: true },
    { acltype: "subscribePattern", topic: `${prefix}#`, allow: true },
  ];
}

/** The device's id when the client is one the server made (it holds its device role). */
export function ownedDevice(client: BrokerClient): string | null {
  return client.roles.includes(deviceRole(client.username)) ? client.username : null;
}

const createGroup = (prefix: string, group: string): DynsecCommand[] => [
  { command: "createRole", rolename: groupName(group), acls: groupAcls(prefix, group) },
  { command: "createGroup", groupname: groupName(group), roles: [{ rolename: groupName(group) }] },
];

const createDevice = (prefix: string, device: WantedDevice, roleExists: boolean): DynsecCommand[] => [
  ...(roleExists ? [] : [{ command: "createRole", rolename: deviceRole(device.id), acls: deviceAcls(prefix, device.id) }]),
  { command: "createClient", username: device.id, textname: textname(device.key), roles: [{ rolename: deviceRole(device.id) }], groups: device.groups.map((g) => ({ groupname: groupName(g) })) },
];

/**
 * Commands that bring one device's client from `current` (null: none) to `wanted` (null: none).
 * Deleting a client ends its connection (mosquitto kicks it); so does a group change, after which
 * the device subscribes again under its new ACL. A new key replaces the client, which ends the
 * connection of whoever held the old one.
 */
export function planDevice(prefix: string, id: string, current: { key: string | null; groups: string[]; disabled?: boolean } | null, wanted: WantedDevice | null, roleExists: boolean): DynsecCommand[] {
  if (!wanted) return current ? [{ command: "deleteClient", username: id }, { command: "deleteRole", rolename: deviceRole(id) }] : [];
  if (!current) return createDevice(prefix, wanted, roleExists);
  if (current.key !== wanted.key || current.disabled) return [{ command: "deleteClient", username: id }, ...createDevice(prefix, wanted, true)];
  return [
    ...current.groups.filter((g) => !wanted.groups.includes(g)).map((g) => ({ command: "removeGroupClient", groupname: groupName(g), username: id })),
    ...wanted.groups.filter((g) => !current.groups.includes(g)).map((g) => ({ command: "addGroupClient", groupname: groupName(g), username: id })),
  ];
}

/** The key id a client's textname records, or null. */
export function clientKey(client: BrokerClient): string | null {
  return /^apt-ostree device, key ([0-9a-f]+)$/.exec(client.textname ?? "")?.[1] ?? null;
}

/** Operator groups of the server's dynsec groups. */
const operatorGroups = (names: string[]) => names.filter((n) => n.startsWith(GROUP_PREFIX)).map((n) => n.slice(GROUP_PREFIX.length));

/**
 * The whole resync: from what the broker holds to what the store implies. Groups come first (a
 * client joins only existing ones); a client of someone else's under a device's id is replaced;
 * the server's groups no device needs any more go last.
 */
export function planResync(prefix: string, broker: BrokerState, wanted: WantedDevice[]): DynsecCommand[] {
  const commands: DynsecCommand[] = [];
  const neededGroups = new Set(wanted.flatMap((d) => d.groups));
  const existingGroups = new Set(operatorGroups(broker.groups));
  const roles = new Set(broker.roles);
  for (const group of [...neededGroups].sort()) {
    if (existingGroups.has(group)) continue;
    // A leftover role of a half-made group is taken as it is.
    if (roles.has(groupName(group))) commands.push({ command: "createGroup", groupname: groupName(group), roles: [{ rolename: groupName(group) }] });
    else commands.push(...createGroup(prefix, group));
  }
  const clients = new Map(broker.clients.map((c) => [c.username, c]));
  const wantedById = new Map(wanted.map((d) => [d.id, d]));
  for (const client of broker.clients) {
    const id = ownedDevice(client);
    if (id !== null && !wantedById.has(id)) commands.push(...planDevice(prefix, id, { key: clientKey(client), groups: [] }, null, true));
  }
  for (const device of wanted) {
    const client = clients.get(device.id);
    const roleExists = roles.has(deviceRole(device.id));
    if (client && ownedDevice(client) === null) commands.push({ command: "deleteClient", username: device.id }, ...createDevice(prefix, device, roleExists));
    else commands.push(...planDevice(prefix, device.id, client ? { key: clientKey(client), groups: operatorGroups(client.groups), disabled: client.disabled === true } : null, device, roleExists));
  }
  // Device roles left without a client (a delete that stopped halfway).
  for (const role of broker.roles) {
    if (role.startsWith(DEVICE_ROLE_PREFIX) && !wantedById.has(role.slice(DEVICE_ROLE_PREFIX.length)) && !clients.has(role.slice(DEVICE_ROLE_PREFIX.length))) commands.push({ command: "deleteRole", rolename: role });
  }
  for (const group of existingGroups) {
    if (!neededGroups.has(group)) commands.push({ command: "deleteGroup", groupname: groupName(group) }, { command: "deleteRole", rolename: groupName(group) });
  }
  return commands;
}
