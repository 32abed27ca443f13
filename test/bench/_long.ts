import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AGENT_BUNDLE, bundleDevice } from "../../device/bundle.ts";
import { AgentFixture } from "../helpers/agent-fixture.ts";
import { until } from "../helpers/wait.ts";
const fixture = new AgentFixture();
await fixture.setUp("long");
fixture.settings = { ...fixture.settings, pollSeconds: 30 } as never;
const config = await fixture.writeConfig();
await bundleDevice(join(fixture.dir, "dist"));
const child = spawn("node", [join(fixture.dir, "dist", AGENT_BUNDLE), "--config", config], { stdio: "ignore" });
await until(async () => (await fixture.device())?.booted?.version === "1", "report", 60_000);
for (let i = 0; i < 16; i++) {
  await new Promise((r) => setTimeout(r, 30_000));
  const s = await readFile(`/proc/${child.pid}/status`, "utf8");
  console.log(`${(i + 1) * 30}s`, s.split("\n").filter((l) => /VmRSS|RssAnon/.test(l)).map((l) => l.replace(/\s+/g, " ")).join(" "));
}
child.kill("SIGKILL");
await fixture.tearDown();
