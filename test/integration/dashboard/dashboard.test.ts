/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core, kept off the
 * network) against the real server in-process with simulated devices over real MQTT.
 * Screenshots of each page land in test/artifacts/ for a person to look at.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { adminApi } from "../../helpers/admin-api.ts";
import { TEST_ADMIN_TOKEN, testServerSettings } from "../../helpers/server-settings.ts";
import { SimulatedDevice } from "../../helpers/simulated-device.ts";
import { initServerRepo, publishSyntheticVersion } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";

const REF = "test/bookworm/test-machine/test-image";
const ARTIFACTS = fileURLToPath(new URL("../../artifacts/", import.meta.url));
const key = generateKeyPair();
let dir: string;
let server: RunningServer;
let browser: Browser;
let page: Page;
const devices: SimulatedDevice[] = [];
const api = adminApi(() => `http://127.0.0.1:${server.httpPort}`);
const base = () => `http://127.0.0.1:${server.httpPort}`;

async function screenshot(name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `dashboard-${name}.png`), fullPage: true });
}

const tile = (label: string) => page.locator(`[data-count="${label}"] .n`);

beforeAll(async () => {
  dir = await makeTempDir("dashboard");
  await mkdir(ARTIFACTS, { recursive: true });
  const repo = await initServerRepo(dir, key);
  for (const version of [1, 2]) await publishSyntheticVersion(repo, REF, dir, key, version);
  server = await startServer({ ...testServerSettings({ repo, data: join(dir, "data"), signingKey: join(dir, "server.secret") }), tickMilliseconds: 100 }, silentLogger());
  const behaviours = ["healthy", "healthy", "healthy", "rolled-back", "healthy"] as const;
  for (const [i, behaviour] of behaviours.entries()) {
    const device = new SimulatedDevice(`lab-${i + 1}`, key.publicKey, ["lab"]);
    device.behaviour = behaviour;
    if (i === 4) device.updateDelayMs = 600_000;
    // The embedded broker enrolls an unknown device as pending and refuses it until accepted.
    await expect(device.connect(server.mqttPort!)).rejects.toThrow(/Not authorized/);
    await api(`devices/${device.id}/accept`, {});
    await device.connect(server.mqttPort!);
    devices.push(device);
  }
  for (const id of ["newcomer", "spammer", "passer-by"]) await expect(new SimulatedDevice(id, key.publicKey, ["lab"]).connect(server.mqttPort!)).rejects.toThrow(/Not authorized/);
  await until(async () => (await server.store.listDevices()).filter((d) => d.state === "idle").length === 5, "five devices reporting");
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 }, timezoneId: "Pacific/Auckland" });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  for (const device of devices) await device.disconnect().catch(() => undefined);
  await server?.close();
  await removeTree(dir);
});

describe("the dashboard in chromium", () => {
  it("asks for the admin token, refuses a wrong one, and keeps the API closed to a session without its header", async () => {
    await page.goto(`${base()}/`);
    expect(new URL(page.url()).pathname).toBe("/login");
    await page.getByLabel("Admin token").fill("not-the-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert").textContent()).resolves.toMatch(/not the admin token/);
    await page.getByLabel("Admin token").fill(TEST_ADMIN_TOKEN);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Fleet", exact: true }).waitFor();
    const forged = await page.evaluate(async () => (await fetch("/api/v1/devices/newcomer/accept", { method: "POST" })).status);
    expect(forged).toBe(403);
    expect((await server.store.getDevice("newcomer"))!.enrollment).toBe("pending");
  });

  it("lists the fleet with its counts and versions, filters it, and follows a report live without a reload", async () => {
    await page.goto(`${base()}/#/`);
    await page.getByRole("heading", { name: "Fleet", exact: true }).waitFor();
    await expect(tile("devices").textContent()).resolves.toBe("5");
    await expect(tile("pending enrollment").textContent()).resolves.toBe("3");
    await expect(tile("idle").textContent()).resolves.toBe("5");
    await expect(page.locator("#shown").textContent()).resolves.toBe("5 of 5 devices");
    await page.getByLabel("Search").fill("lab-3");
    await expect(page.locator("#shown").textContent()).resolves.toBe("1 of 5 devices");
    await page.getByLabel("Search").fill("");
    await screenshot("fleet");

    await page.evaluate(() => ((window as unknown as { marker: string }).marker = "same page"));
    await devices[0]!.reportNow("downloading");
    await page.waitForFunction(() => document.querySelector('[data-count="downloading"] .n')?.textContent === "1", undefined, { timeout: 5000 });
    expect(await page.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe("same page");
    await devices[0]!.reportNow("idle");
  });

  it("rejects and deletes pending devices from their buttons, after asking", async () => {
    page.once("dialog", (dialog) => void dialog.accept());
    await page.getByRole("button", { name: "Reject spammer" }).click();
    await until(async () => (await server.store.getDevice("spammer"))?.enrollment === "rejected", "the device to be rejected");
    await page.getByRole("heading", { name: "Rejected" }).waitFor({ timeout: 5000 });
    page.once("dialog", (dialog) => void dialog.accept());
    await page.getByRole("button", { name: "Delete passer-by" }).click();
    await until(async () => await server.store.getDevice("passer-by") === null, "the device to be deleted");
    await page.waitForFunction(() => document.querySelector('[data-count="pending enrollment"] .n')?.textContent === "1", undefined, { timeout: 5000 });
    await screenshot("enrollment");
    page.once("dialog", (dialog) => void dialog.dismiss());
    await page.getByRole("button", { name: "Delete spammer" }).click();
    expect((await server.store.getDevice("spammer"))?.enrollment).toBe("rejected");
  });

  it("accepts a pending device from its button, after asking", async () => {
    page.once("dialog", (dialog) => void dialog.accept());
    await page.getByRole("button", { name: "Accept newcomer" }).click();
    await until(async () => (await server.store.getDevice("newcomer"))!.enrollment === "accepted", "the device to be accepted");
    await page.waitForFunction(() => document.querySelector('[data-count="pending enrollment"] .n')?.textContent === "0", undefined, { timeout: 5000 });
  });

  it("shows a rollout's waves and pauses it from its button", async () => {
    const created = await api("rollouts", { ref: REF, select: { devices: devices.slice(0, 5).map((d) => d.id) }, waves: "100%", waveDelay: "0s", waveTimeout: "1h", maxFailures: "50%" });
    expect(created.status).toBe(201);
    const id = created.json.rollout.id as string;
    await until(async () => (await server.store.rolloutDevices(id)).filter((m) => m.status === "healthy" || m.status === "rolled-back").length === 4, "four devices to finish");
    await page.goto(`${base()}/#/rollouts`);
    const card = page.locator(`[data-rollout="${id}"]`);
    await card.waitFor();
    await expect(card.getByRole("img").getAttribute("aria-label")).resolves.toBe("3 healthy, 1 in progress, 0 pending, 0 failed, 1 rolled back of 5");
    await screenshot("rollouts");
    page.once("dialog", (dialog) => void dialog.accept());
    await card.getByRole("button", { name: "Pause" }).click();
    await until(async () => (await api(`rollouts/${id}`)).json.rollout.progress.state === "paused", "the rollout to pause");
    await card.getByRole("button", { name: "Resume" }).waitFor();
  });

  it("shows a device's rollback with its reason and health history", async () => {
    await page.goto(`${base()}/#/devices/lab-4`);
    await page.getByRole("heading", { name: /lab-4/ }).waitFor();
    await expect(page.locator(".reason").first().textContent()).resolves.toBe("required health check app.sh failed");
    await expect(page.getByRole("heading", { name: /lab-4/ }).textContent()).resolves.toMatch(/rolled-back/);
    await screenshot("device");
  });

  it("lists releases with their upgrade paths, and stays readable on a phone", async () => {
    await page.goto(`${base()}/#/releases`);
    await page.getByRole("heading", { name: "Releases" }).waitFor();
    const row = page.locator("tbody tr").first();
    await expect(row.textContent()).resolves.toMatch(/from 1: [\d.]+ (KiB|MiB)/);
    await expect(row.textContent()).resolves.toMatch(/from scratch/);
    // The synthetic image's one package, app, follows the version.
    await row.getByText("since 1: 1 upgraded, 0 downgraded, 0 removed, 0 added").click();
    await expect(row.getByText("upgraded app 1 → 2").isVisible()).resolves.toBe(true);
    await screenshot("releases");
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base()}/#/`);
    await page.getByRole("heading", { name: "Fleet", exact: true }).waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1)).toBe(true);
    await screenshot("fleet-phone");
  });
});
