/**
 * `/metrics` as Prometheus scrapes it: apt-ostree's fleet and traffic figures, the instance that
 * answered, and prom-client's process and Node.js figures, in a text that `promtool check metrics`
 * (Debian's prometheus package, scripts/setup.sh) accepts without a complaint.
 */
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../shared/log.ts";
import { generateKeyPair } from "../../../shared/sign/ed25519.ts";
import { startServer, type RunningServer } from "../../../server/serve.ts";
import { adminApi } from "../../helpers/admin-api.ts";
import { testServerSettings } from "../../helpers/server-settings.ts";
import { SimulatedDevice } from "../../helpers/simulated-device.ts";
import { initServerRepo, publishSyntheticVersion } from "../../helpers/synthetic-image.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";
import { until } from "../../helpers/wait.ts";

const REF = "test/bookworm/test-machine/test-image";
const key = generateKeyPair();
let dir = "";
let server: RunningServer;
const device = new SimulatedDevice("metrics-a", key.publicKey, ["lab"]);
const api = adminApi(() => `http://127.0.0.1:${server.httpPort}`);

beforeAll(async () => {
  dir = await makeTempDir("metrics");
  const repo = await initServerRepo(dir, key);
  await publishSyntheticVersion(repo, REF, dir, key, 1);
  server = await startServer({ ...testServerSettings({ repo, data: join(dir, "data"), signingKey: join(dir, "server.secret") }), tickMilliseconds: 100 }, silentLogger());
  await api("devices", { id: "metrics-a", publicKey: Buffer.from(device.key.publicKey).toString("base64"), groups: ["lab"] });
  await device.connect(server.mqttPort!);
  await device.reportNow("idle");
  await until(async () => (await api("devices/metrics-a")).json.device.state === "idle", "its report", 10_000);
  await publishSyntheticVersion(repo, REF, dir, key, 2);
  await api("rollouts", { ref: REF, select: { devices: ["metrics-a"] }, waves: "100%", waveDelay: "0s", waveTimeout: "1m" });
}, 60_000);

afterAll(async () => {
  await device.disconnect().catch(() => undefined);
  await server?.close();
  await removeTree(dir);
});

describe("/metrics", () => {
  it("names the instance, adds the process and runtime figures, and passes promtool check metrics", async () => {
    const text = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
    expect(text).toMatch(new RegExp(`^aptostree_server_info\\{instance="[^"]+:${server.httpPort}",store="sqlite"\\} 1$`, "m"));
    for (const name of ["process_resident_memory_bytes", "nodejs_heap_size_used_bytes", "nodejs_eventloop_lag_seconds", "nodejs_active_handles", "process_cpu_seconds_total"]) {
      expect(text).toMatch(new RegExp(`^${name}(\\{[^}]*\\})? \\d`, "m"));
    }
    expect(text).toMatch(/^aptostree_devices\{state="(idle|downloading|healthy)"\} 1$/m);
    expect(text).toMatch(/^aptostree_rollouts\{state="(running|completed)"\} 1$/m);
    const checked = await execa("promtool", ["check", "metrics"], { input: text, reject: false });
    expect({ exitCode: checked.exitCode, output: `${checked.stdout}${checked.stderr}`.trim() }).toEqual({ exitCode: 0, output: "" });
  });
});
