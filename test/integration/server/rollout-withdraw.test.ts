/**
 * A device that was sent an update and did not install it keeps no update on its command topic
 * (issue 18, finding 5): a wave timeout, a failed or rolled-back report, a pause and an abort all
 * leave the signed withdrawal retained there, so the device does not install the update when it
 * (re)connects. The real server (in-process), real MQTT and simulated devices; what a device
 * finds on its topic is what arrives when it connects again.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { SimulatedDevice, type UpdateBehaviour } from "../../helpers/simulated-device.ts";
import { initServerRepo, publishSyntheticVersion } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";
import { adminApi } from "../../helpers/admin-api.ts";
import { testServerSettings } from "../../helpers/server-settings.ts";
import { autoAcceptSettings, TEST_ENROLLMENT_SECRET } from "../../helpers/enrollment-secret.ts";

const REF = "test/bookworm/test-machine/test-image";
const key = generateKeyPair();
let dir: string;
let server: RunningServer;
const devices: SimulatedDevice[] = [];
const api = adminApi(() => `http://127.0.0.1:${server.httpPort}`);

async function device(id: string, behaviour: UpdateBehaviour): Promise<SimulatedDevice> {
  const sim = new SimulatedDevice(id, key.publicKey, ["withdraw"], { enrollmentSecret: TEST_ENROLLMENT_SECRET });
  sim.behaviour = behaviour;
  await sim.connect(server.mqttPort!);
  devices.push(sim);
  await until(async () => (await server.store.getDevice(id))?.online === true || null, `${id} to enroll`);
  return sim;
}

/** Reconnects `sim` and returns the kind of command retained on its topic for `rollout`. */
async function retainedFor(sim: SimulatedDevice, rollout: string): Promise<string> {
  await sim.disconnect();
  const before = { withdrawals: sim.withdrawals.length, commands: sim.commandsReceived.length };
  await sim.connect(server.mqttPort!);
  return until(() => {
    if (sim.withdrawals.length > before.withdrawals) return sim.withdrawals.at(-1)!.id === rollout ? `withdraw (${sim.withdrawals.at(-1)!.reason})` : `withdraw of ${sim.withdrawals.at(-1)!.id}`;
    if (sim.commandsReceived.length > before.commands) return sim.commandsReceived.at(-1) === rollout ? "update" : `update of ${sim.commandsReceived.at(-1)}`;
    return null;
  }, `the retained command on ${sim.id}'s topic`);
}

beforeAll(async () => {
  dir = await makeTempDir("rollout-withdraw");
  const repo = await initServerRepo(dir, key);
  await publishSyntheticVersion(repo, REF, dir, key, 1);
  server = await startServer({ ...testServerSettings({ repo, data: join(dir, "data"), ...(await autoAcceptSettings(dir)), signingKey: join(dir, "server.secret") }), tickMilliseconds: 100 }, silentLogger());
});
afterAll(async () => {
  for (const sim of devices) await sim.disconnect();
  await server?.close();
  await removeTree(dir);
});

describe("withdrawing an update a device did not install", () => {
  it("a device sent the update that went offline, timed out and was aborted finds the withdrawal when it reconnects", async () => {
    const sims = [await device("dev-a", "silent"), await device("dev-b", "silent")];
    const created = await api("rollouts", { ref: REF, select: { devices: ["dev-a", "dev-b"] }, waves: "50%,100%", waveDelay: "0s", waveTimeout: "2s", maxFailures: "0%" });
    expect(created.status).toBe(201);
    const id = created.json.rollout.id;
    const first = sims.find((s) => created.json.rollout.devices.some((m: { deviceId: string; wave: number }) => m.deviceId === s.id && m.wave === 0))!;
    await until(() => first.commandsReceived.includes(id) || null, `${first.id} to get the update`);
    await first.disconnect();

    const paused = await until(async () => {
      const { json } = await api(`rollouts/${id}`);
      return json.rollout.progress.state === "paused" ? json.rollout : null;
    }, "the rollout to time out and pause");
    expect(paused.devices.find((m: { deviceId: string }) => m.deviceId === first.id)).toMatchObject({ status: "failed", detail: "no final report within 2 s" });
    expect((await api(`rollouts/${id}/abort`, {})).json.rollout.progress.state).toBe("aborted");

    expect(await retainedFor(first, id)).toBe("withdraw (aborted)");
    const second = sims.find((s) => s !== first)!;
    expect(second.commandsReceived).toEqual([]);
  });

  it.each<UpdateBehaviour>(["failed", "rolled-back"])("a device that reports %s has the update withdrawn while the rollout goes on", async (behaviour) => {
    const sim = await device(`dev-${behaviour}`, behaviour);
    const created = await api("rollouts", { ref: REF, select: { devices: [sim.id] }, waves: "100%", waveDelay: "0s", waveTimeout: "10m", maxFailures: "100%" });
    const id = created.json.rollout.id;
    await until(async () => (await api(`rollouts/${id}`)).json.rollout.devices[0].status === behaviour || null, `${sim.id} to be ${behaviour}`);
    await until(() => sim.withdrawals.some((w) => w.id === id) || null, `the withdrawal to reach ${sim.id}`);
    expect(sim.withdrawals.filter((w) => w.id === id)).toEqual([{ id, reason: "aborted" }]);
    expect(await retainedFor(sim, id)).toBe("withdraw (aborted)");
  });
});
