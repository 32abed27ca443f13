/**
 * `serve --db postgres://...`: the whole update loop with the fleet kept in PostgreSQL (a private
 * server started by the test) instead of SQLite: enrollment, a rollout to the real agent on a
 * throwaway sysroot, the agent's reports; and everything still there after the server restarts,
 * with the completed rollout still completed and the agent still healthy. No SQLite file is written.
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentFixture, DEVICE_ID, REF } from "../../helpers/agent-fixture.ts";
import { startPostgres, type RunningPostgres } from "../../helpers/postgres.ts";
import { until } from "../../helpers/wait.ts";

const fixture = new AgentFixture();
let postgres: RunningPostgres;
let url = "";

beforeAll(async () => {
  postgres = await startPostgres("serve");
  url = await postgres.createDatabase("fleet");
  await fixture.setUp("serve-postgres", { publishUpTo: 2, db: url });
  await fixture.startAgent();
  await until(async () => (await fixture.device())?.booted?.version === "1", "the device to enroll and report v1", 30_000);
}, 90_000);

afterAll(async () => {
  await fixture.tearDown();
  await postgres?.remove();
}, 30_000);

describe("serve on PostgreSQL", () => {
  it("takes a device through a rollout, keeps it all in the database, and finds it again after a restart", async () => {
    const { json } = await fixture.api("rollouts", { ref: REF, select: { devices: [DEVICE_ID] }, waves: "100%", waveDelay: "0s", waveTimeout: "5m" });
    const rollout = json.rollout.id;
    await fixture.rebootWhenAsked();
    await until(async () => ((await fixture.api(`rollouts/${rollout}`)).json.rollout.progress.state === "completed" ? true : null), "the rollout to complete", 60_000);
    expect(await fixture.device()).toMatchObject({ state: "healthy", booted: { version: "2" }, enrollment: "accepted" });

    // The rows are PostgreSQL's: read them straight from the database.
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const device = await client.query("SELECT state, enrollment, last_counter FROM devices WHERE id = $1", [DEVICE_ID]);
      expect(device.rows[0]).toMatchObject({ state: "healthy", enrollment: "accepted" });
      const members = await client.query("SELECT status FROM rollout_devices WHERE rollout_id = $1", [rollout]);
      expect(members.rows).toEqual([{ status: "healthy" }]);
    } finally {
      await client.end();
    }
    await expect(access(join(fixture.dir, "data", "fleet.db"))).rejects.toThrow();

    // A restart reads it all back, and the completed rollout sends nothing again.
    await fixture.restartServer();
    expect((await fixture.api(`rollouts/${rollout}`)).json.rollout.progress.state).toBe("completed");
    expect(await fixture.device()).toMatchObject({ booted: { version: "2" } });
    await until(async () => (await fixture.device())?.online, "the device back online", 30_000);
    expect(fixture.agent!.agent.state).toMatchObject({ name: "healthy" });
  }, 120_000);
});
