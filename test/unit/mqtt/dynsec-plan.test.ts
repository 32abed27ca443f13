import { describe, expect, it } from "vitest";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { planDevice, planResync, textname, wantedDevice, type BrokerState } from "../../../server/mqtt/dynsec/plan.ts";

const P = "apt-ostree/";
const key = Buffer.from(generateKeyPair().publicKey).toString("base64");
const record = (id: string, enrollment: string, groups: string[] = [], publicKey = key) => ({ id, publicKey, enrollment, groups });
const names = (commands: { command: string; username?: unknown; groupname?: unknown; rolename?: unknown }[]) =>
  commands.map((c) => `${c.command} ${String(c.username ?? c.groupname ?? c.rolename)}`);

describe("dynsec plan", () => {
  it("wants a client only for accepted devices", () => {
    expect(wantedDevice(record("d1", "accepted", ["b", "a"]))).toMatchObject({ id: "d1", groups: ["a", "b"], key: expect.stringMatching(/^[0-9a-f]{16}$/) });
    for (const state of ["pending", "preauthorized", "rejected", "revoked"]) expect(wantedDevice(record("d1", state))).toBeNull();
  });

  it.each([
    ["a new device gets its role and client", null, { groups: ["lab"] }, false, ["createRole apt-ostree:device:d1", "createClient d1"]],
    ["a revoked device loses both", { groups: ["lab"] }, null, true, ["deleteClient d1", "deleteRole apt-ostree:device:d1"]],
    ["a group change moves it", { groups: ["lab"] }, { groups: ["prod"] }, true, ["removeGroupClient d1", "addGroupClient d1"]],
    ["nothing changed, nothing sent", { groups: ["lab"] }, { groups: ["lab"] }, true, []],
  ] as const)("%s", (_name, current, wanted, roleExists, expected) => {
    const wantedRecord = wanted ? wantedDevice(record("d1", "accepted", [...wanted.groups]))! : null;
    const currentState = current ? { key: wantedDevice(record("d1", "accepted"))!.key, groups: [...current.groups] } : null;
    const commands = planDevice(P, "d1", currentState, wantedRecord, roleExists);
    expect(names(commands)).toEqual(expected);
    if (_name.startsWith("a group")) expect(commands.map((c) => c.groupname)).toEqual(["apt-ostree:group:lab", "apt-ostree:group:prod"]);
  });

  it("replaces the client when the key changed (rekey), which ends the old key's connection", () => {
    const wanted = wantedDevice(record("d1", "accepted", [], Buffer.from(generateKeyPair().publicKey).toString("base64")))!;
    expect(names(planDevice(P, "d1", { key: "0000000000000000", groups: [] }, wanted, true))).toEqual(["deleteClient d1", "createClient d1"]);
  });

  it("resyncs: groups first, strays deleted, someone else's client under a device id replaced, other names left alone", () => {
    const d1 = wantedDevice(record("d1", "accepted", ["lab"]))!;
    const broker: BrokerState = {
      clients: [
        { username: "apt-ostree:server", roles: ["admin", "apt-ostree:server"], groups: [] },
        { username: "gone", textname: textname("abc"), roles: ["apt-ostree:device:gone"], groups: ["apt-ostree:group:old"] },
        { username: "d1", roles: ["operator-role"], groups: [] },
        { username: "monitor", roles: ["readonly"], groups: [] },
      ],
      roles: ["admin", "apt-ostree:server", "apt-ostree:device:gone", "apt-ostree:group:old", "readonly", "operator-role"],
      groups: ["apt-ostree:group:old", "operators"],
    };
    expect(names(planResync(P, broker, [d1]))).toEqual([
      "createRole apt-ostree:group:lab",
      "createGroup apt-ostree:group:lab",
      "deleteClient gone",
      "deleteRole apt-ostree:device:gone",
      "deleteClient d1",
      "createRole apt-ostree:device:d1",
      "createClient d1",
      "deleteGroup apt-ostree:group:old",
      "deleteRole apt-ostree:group:old",
    ]);
  });

  it("spells each device's topics out (mosquitto 2.0.11 dynsec has no %u)", () => {
    const [role] = planDevice(P, "d1", null, wantedDevice(record("d1", "accepted"))!, false);
    expect(role).toMatchObject({ acls: expect.arrayContaining([{ acltype: "subscribeLiteral", topic: "apt-ostree/devices/d1/cmd", allow: true }, { acltype: "publishClientSend", topic: "apt-ostree/devices/d1/online", allow: true }]) });
    expect(JSON.stringify(role)).not.toMatch(/%[uc]/);
  });
});
