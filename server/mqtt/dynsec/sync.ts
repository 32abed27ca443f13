/**
 * Keeps mosquitto's dynamic-security state derived from the fleet store (serve --mqtt-dynsec):
 * a full resync at start and after each reconnect to the broker, then, on every change the store
 * announces, only the commands that device needs (plan.ts). Revoking, rejecting, re-keying or
 * deleting a device deletes its client, which makes mosquitto end its connection at once and
 * refuse its certificate everything afterwards; assigning groups moves it between dynsec groups.
 * A failed command is logged and answered by another full resync a little later.
 */
import type { MqttClient } from "mqtt";
import type { Logger } from "../../../shared/log.ts";
import type { FleetChanges } from "../../fleet/changes.ts";
import type { DeviceRecord, FleetStore } from "../../fleet/store.ts";
import { BROKER_SERVER_IDENTITY } from "../../tls/broker-certificates.ts";
import { dynsecControl, DynsecError, type DynsecControl, type DynsecResult } from "./control.ts";
import { groupAcls, groupName, planDevice, planResync, SERVER_ROLE, serverAcls, wantedDevice, type BrokerClient, type BrokerState, type DynsecCommand, type WantedDevice } from "./plan.ts";

export interface DynsecSyncOptions {
  client: MqttClient;
  store: FleetStore;
  changes: FleetChanges;
  prefix: string;
  log: Logger;
  /** Answer timeout of one request (10 s). */
  timeoutMs?: number;
  /** Wait before a full resync after a failure (5 s). */
  retryMs?: number;
}

export interface DynsecSync {
  /** Resolves once every change announced so far is on the broker (or failed and was logged). */
  settled(): Promise<void>;
  stop(): void;
}

const PAGE = 100;

/** Resyncs, then follows the store. Throws (DynsecError) when the first resync fails: serve does not start half-protected. */
export async function startDynsecSync(options: DynsecSyncOptions): Promise<DynsecSync> {
  const { client, store, prefix, log } = options;
  const control = dynsecControl(client, options.timeoutMs);
  /** What the broker holds for each device the server made a client for. */
  const applied = new Map<string, { key: string | null; groups: string[] }>();
  const groups = new Set<string>();
  const dirty = new Set<string>();
  let resyncWanted = false;
  let stopped = false;
  let work: Promise<void> = Promise.resolve();
  let retry: NodeJS.Timeout | null = null;

  const run = async (commands: DynsecCommand[], what: string): Promise<void> => {
    if (commands.length === 0) return;
    const failed = (await control.run(commands)).flatMap((result: DynsecResult, i) => (result.error ? [`${commands[i]!.command} ${JSON.stringify(commands[i]!.username ?? commands[i]!.rolename ?? commands[i]!.groupname)}: ${result.error}`] : []));
    if (failed.length > 0) throw new DynsecError("E_DYNSEC_REFUSED", `the dynamic-security plugin refused ${failed.length} of ${commands.length} command(s) for ${what}: ${failed.slice(0, 3).join("; ")}`);
  };

  const resync = async (): Promise<void> => {
    await ensureServerRole(control, client, prefix, log);
    await run([{ command: "setDefaultACLAccess", acls: [{ acltype: "publishClientReceive", allow: false }] }], "the default ACL");
    const broker = await readBrokerState(control);
    const wanted = (await store.listDevices("accepted")).map(wantedDevice).filter((d): d is WantedDevice => d !== null);
    const commands = planResync(prefix, broker, wanted);
    await run(commands, "the resync");
    applied.clear();
    groups.clear();
    for (const device of wanted) {
      applied.set(device.id, { key: device.key, groups: device.groups });
      for (const group of device.groups) groups.add(group);
    }
    log.info({ event: "mqtt.dynsec.resynced", devices: wanted.length, groups: groups.size, commands: commands.length }, `dynamic security: ${wanted.length} device client(s) in ${groups.size} group(s), ${commands.length} change(s) made`);
  };

  const syncDevice = async (id: string): Promise<void> => {
    const record: DeviceRecord | null = await store.getDevice(id);
    const wanted = record ? wantedDevice(record) : null;
    const current = applied.get(id) ?? null;
    if (!wanted && !current) return;
    if (wanted && current && current.key === wanted.key && current.groups.join() === wanted.groups.join()) return;
    const missing = (wanted?.groups ?? []).filter((g) => !groups.has(g));
    await run(missing.flatMap((g) => [{ command: "createRole", rolename: groupName(g), acls: groupAcls(prefix, g) }, { command: "createGroup", groupname: groupName(g), roles: [{ rolename: groupName(g) }] }]), `group(s) ${missing.join(", ")}`);
    for (const group of missing) groups.add(group);
    await run(planDevice(prefix, id, current, wanted, current !== null), `device ${id}`);
    if (wanted) applied.set(id, { key: wanted.key, groups: wanted.groups });
    else applied.delete(id);
    log.info({ event: "mqtt.dynsec.device", deviceId: id, client: wanted !== null, groups: wanted?.groups ?? [] }, wanted ? `dynamic security: ${id} may connect, in ${wanted.groups.join(", ") || "no group"}` : `dynamic security: ${id} has no client any more; mosquitto ended its connection and refuses its certificate everything`);
  };

  const drain = async (): Promise<void> => {
    while (!stopped && (resyncWanted || dirty.size > 0)) {
      try {
        if (resyncWanted) {
          resyncWanted = false;
          dirty.clear();
          await resync();
          continue;
        }
        const [id] = dirty;
        dirty.delete(id!);
        await syncDevice(id!);
      } catch (error) {
        log.error({ event: "mqtt.dynsec.failed", err: error }, `dynamic security is behind the store: ${(error as Error).message}; a full resync follows`);
        retry ??= setTimeout(() => {
          retry = null;
          schedule(() => (resyncWanted = true));
        }, options.retryMs ?? 5000);
        retry.unref();
        return;
      }
    }
  };
  const schedule = (mark: () => void) => {
    if (stopped) return;
    mark();
    work = work.then(drain);
  };

  await resync();
  const unsubscribe = options.changes.subscribe((change) => {
    if (change.kind === "device") schedule(() => dirty.add(change.id));
  });
  // A reconnection may be to a mosquitto restarted with another dynamic-security.json: the store decides.
  const onConnect = () => schedule(() => (resyncWanted = true));
  client.on("connect", onConnect);
  return {
    settled: () => work,
    stop: () => {
      stopped = true;
      unsubscribe();
      client.off("connect", onConnect);
      if (retry) clearTimeout(retry);
    },
  };
}

/**
 * The server's own client needs SERVER_ROLE to write commands (`dynsec init` gives it only the
 * admin role). Giving a connected client a role makes mosquitto end its connection, so the answer
 * never comes: the server waits for its reconnection instead, then checks.
 */
async function ensureServerRole(control: DynsecControl, client: MqttClient, prefix: string, log: Logger): Promise<void> {
  const [role, self] = await control.run([{ command: "getRole", rolename: SERVER_ROLE }, { command: "getClient", username: BROKER_SERVER_IDENTITY }]);
  if (self!.error) throw new DynsecError("E_DYNSEC_REFUSED", `dynamic security has no client ${BROKER_SERVER_IDENTITY} (${self!.error}), yet the server is connected as it: was dynamic-security.json made with 'mosquitto_ctrl dynsec init FILE ${BROKER_SERVER_IDENTITY}'?`);
  if (role!.error) {
    const [created] = await control.run([{ command: "createRole", rolename: SERVER_ROLE, acls: serverAcls(prefix) }]);
    if (created!.error) throw new DynsecError("E_DYNSEC_REFUSED", `cannot create the role ${SERVER_ROLE}: ${created!.error}`);
  }
  const roles = ((self!.data?.client as { roles?: { rolename: string }[] } | undefined)?.roles ?? []).map((r) => r.rolename);
  if (roles.includes(SERVER_ROLE)) return;
  log.info({ event: "mqtt.dynsec.server-role" }, `giving ${BROKER_SERVER_IDENTITY} the role ${SERVER_ROLE}; mosquitto ends the server's connection for that, and it reconnects`);
  const reconnected = new Promise<void>((resolve) => client.once("connect", () => resolve()));
  await control.run([{ command: "addClientRole", username: BROKER_SERVER_IDENTITY, rolename: SERVER_ROLE }]).catch((error: unknown) => {
    if (!(error instanceof DynsecError && (error.code === "E_DYNSEC_DISCONNECTED" || error.code === "E_DYNSEC_TIMEOUT"))) throw error;
  });
  await reconnected;
  const [check] = await control.run([{ command: "getClient", username: BROKER_SERVER_IDENTITY }]);
  const now = ((check!.data?.client as { roles?: { rolename: string }[] } | undefined)?.roles ?? []).map((r) => r.rolename);
  if (!now.includes(SERVER_ROLE)) throw new DynsecError("E_DYNSEC_REFUSED", `${BROKER_SERVER_IDENTITY} still lacks the role ${SERVER_ROLE} after adding it: ${check!.error ?? "no reason given"}`);
}

/** Every client (verbose), role and group name, a page at a time. */
export async function readBrokerState(control: DynsecControl): Promise<BrokerState> {
  const list = async <T>(command: string, key: string, verbose: boolean): Promise<T[]> => {
    const items: T[] = [];
    for (let offset = 0; ; offset += PAGE) {
      const [result] = await control.run([{ command, verbose, count: PAGE, offset }]);
      if (result!.error) throw new DynsecError("E_DYNSEC_REFUSED", `${command}: ${result!.error}`);
      const page = (result!.data?.[key] ?? []) as T[];
      items.push(...page);
      if (page.length < PAGE) return items;
    }
  };
  type Listed = { username: string; textname?: string; disabled?: boolean; roles?: { rolename: string }[]; groups?: { groupname: string }[] };
  const clients: BrokerClient[] = (await list<Listed>("listClients", "clients", true)).map((c) => ({
    username: c.username,
    ...(c.textname !== undefined ? { textname: c.textname } : {}),
    ...(c.disabled ? { disabled: true } : {}),
    roles: (c.roles ?? []).map((r) => r.rolename),
    groups: (c.groups ?? []).map((g) => g.groupname),
  }));
  return { clients, roles: await list<string>("listRoles", "roles", false), groups: await list<string>("listGroups", "groups", false) };
}
