import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DashboardSessions } from "../../../server/http/sessions.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
beforeAll(async () => (dir = await makeTempDir("sessions")));
afterAll(async () => removeTree(dir));

describe("dashboard sessions", () => {
  const TOKEN = "admin-token-0123456789";

  it("expire after their lifetime", async () => {
    let now = new Date("2026-01-01T00:00:00Z");
    const sessions = await DashboardSessions.open({ keyFile: join(dir, "a"), lifetimeSeconds: 3600, now: () => now });
    const session = sessions.issue(TOKEN);
    expect(session.maxAgeSeconds).toBe(3600);
    expect(sessions.valid(session.value, TOKEN)).toBe(true);
    now = new Date("2026-01-01T00:59:59Z");
    expect(sessions.valid(session.value, TOKEN)).toBe(true);
    now = new Date("2026-01-01T01:00:00Z");
    expect(sessions.valid(session.value, TOKEN)).toBe(false);
  });

  it("end all at once when revoked, survive a restart otherwise, and depend on the admin token", async () => {
    const keyFile = join(dir, "b");
    const sessions = await DashboardSessions.open({ keyFile, lifetimeSeconds: 3600 });
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    const first = sessions.issue(TOKEN).value;
    const reopened = await DashboardSessions.open({ keyFile, lifetimeSeconds: 3600 });
    expect(reopened.valid(first, TOKEN)).toBe(true);
    expect(reopened.valid(first, `${TOKEN}x`)).toBe(false);
    const before = await readFile(keyFile, "utf8");
    await reopened.revokeAll();
    expect(await readFile(keyFile, "utf8")).not.toBe(before);
    expect(reopened.valid(first, TOKEN)).toBe(false);
    expect(reopened.valid(reopened.issue(TOKEN).value, TOKEN)).toBe(true);
  });

  it.each([
    ["an empty cookie", ""],
    ["a far-future expiry with a made-up MAC", `v2.99999999999.${"A".repeat(43)}`],
    ["the old v1 form", "abc"],
    ["a huge expiry", `v2.${"9".repeat(400)}.${"A".repeat(43)}`],
  ])("refuse %s", async (_name, cookie) => {
    const sessions = await DashboardSessions.open({ keyFile: join(dir, "c"), lifetimeSeconds: 3600 });
    expect(sessions.valid(cookie, TOKEN)).toBe(false);
  });

  it("shared by instances through one stored secret: valid on each, and a revocation on one reaches the other at its next refresh", async () => {
    // The database's row, as store-postgres.ts keeps it (a fake is fine here: the real one is exercised by multi-instance.test.ts).
    let stored: string | null = null;
    const shared = {
      getOrCreate: async (fresh: string) => (stored ??= fresh),
      replace: async (value: string) => void (stored = value),
    };
    let now = new Date("2026-01-01T00:00:00Z");
    const one = await DashboardSessions.open({ keyFile: join(dir, "unused-1"), shared, lifetimeSeconds: 3600, refreshSeconds: 10, now: () => now });
    const two = await DashboardSessions.open({ keyFile: join(dir, "unused-2"), shared, lifetimeSeconds: 3600, refreshSeconds: 10, now: () => now });
    const session = one.issue(TOKEN).value;
    expect(two.valid(session, TOKEN)).toBe(true);
    await one.revokeAll();
    expect(one.valid(session, TOKEN)).toBe(false);
    await two.refresh();
    expect(two.valid(session, TOKEN)).toBe(true);
    now = new Date("2026-01-01T00:00:10Z");
    await two.refresh();
    expect(two.valid(session, TOKEN)).toBe(false);
    expect(two.valid(one.issue(TOKEN).value, TOKEN)).toBe(true);
    await expect(stat(join(dir, "unused-1"))).rejects.toThrow();
  });
});
