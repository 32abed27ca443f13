/**
 * `npm run bench [-- image|fleet ...]`: the figures docs/BENCHMARKS.md records, printed as
 * Markdown and saved to test/artifacts/bench.md. With no argument every benchmark runs.
 *   image  compose overhead, update size, publish time (test/bench/image.ts; ~25 min)
 *   fleet  1k and 10k devices on one server, embedded aedes and mosquitto (test/bench/fleet.ts)
 *   agent  update overhead against bare ostree, idle RSS and CPU of the bundle (test/bench/agent.ts)
 *   agent-idle  only the idle RSS and CPU (~2 min)
 *   fleet-cluster  10k devices on one process, on two instances (PostgreSQL, brokers joined by Redis), and with the lease holder killed mid-wave (test/bench/fleet-cluster.ts; APT_OSTREE_BENCH_CLUSTER_DEVICES=10000,20000)
 *   store  the fleet store under an enrollment storm: SQLite per-write, SQLite group commit, PostgreSQL (test/bench/store.ts; a minute)
 *   trust  the device's verification chain: a walk of 10 root versions, manifest and commit checks (seconds)
 *   layering  apt-ostree install against apt-get install into a plain chroot, and a layer re-applied onto a new base (test/bench/layering.ts; a few minutes, Debian's mirror)
 *   boot   the qemu scenario's boot, rollout and rollback times and bytes per step (test/bench/boot.ts;
 *          ~25 min for amd64, ~1 h with APT_OSTREE_BENCH_ARCH=arm64)
 */
import { mkdir, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { benchFleet, fleetTable, type FleetRun } from "./fleet.ts";
import { benchImage } from "./image.ts";
import { benchAgent, benchAgentIdle } from "./agent.ts";
import { benchBoot } from "./boot.ts";
import { benchTrustChain } from "./trust.ts";
import { benchStore } from "./store.ts";
import { benchFleetCluster, clusterTable, type ClusterRun, type ClusterSetup } from "./fleet-cluster.ts";
import { benchLayering } from "./layering.ts";

const BENCHES = ["image", "fleet", "fleet-cluster", "store", "agent", "agent-idle", "trust", "layering", "boot"] as const;
type Bench = (typeof BENCHES)[number];

const lines: string[] = [];
const say = (line = "") => {
  lines.push(line);
  process.stdout.write(`${line}\n`);
};
const progress = (line: string) => process.stderr.write(`${line}\n`);

async function fleet(): Promise<void> {
  const sizes = (process.env.APT_OSTREE_BENCH_DEVICES ?? "1000,10000").split(",").map(Number);
  const runs: FleetRun[] = [];
  for (const broker of ["embedded", "mosquitto"] as const) {
    for (const devices of sizes) {
      progress(`fleet: ${devices} devices on ${broker}`);
      runs.push(await benchFleet(broker, devices, progress));
    }
  }
  say("### Fleet: devices held by one server, rollout command fan-out");
  say();
  say("Server: `apt-ostree-server serve --auto-accept` as its own process; devices: one process of mqtt.js clients, each with its own ed25519 identity (signed token, one signed report), sharing the same 2 cores. One rollout, one 100% wave; latency from the POST to each device's first command.");
  say();
  for (const line of fleetTable(runs)) say(line);
  say();
}

const ALL_SETUPS: ClusterSetup[] = ["floor: bare aedes, no server", "one process (SQLite, embedded broker)", "2 instances (PostgreSQL, brokers joined by Redis)", "2 instances, leader killed -9 mid-wave"];

async function fleetCluster(): Promise<void> {
  const sizes = (process.env.APT_OSTREE_BENCH_CLUSTER_DEVICES ?? "10000").split(",").map(Number);
  const setups: ClusterSetup[] = (process.env.APT_OSTREE_BENCH_CLUSTER_SETUPS?.split(",").map((n) => ALL_SETUPS[Number(n)]!) ?? ALL_SETUPS);
  const runs: ClusterRun[] = [];
  for (const devices of sizes) {
    for (const setup of setups) {
      progress(`fleet-cluster: ${devices} devices, ${setup}`);
      runs.push(await benchFleetCluster(setup, devices, progress));
      progress(clusterTable(runs).at(-1)!);
    }
  }
  say("### Fleet cluster: one process against two instances on PostgreSQL and Redis");
  say();
  say("Servers: `apt-ostree-server serve --auto-accept` processes (two: `--db` on one private PostgreSQL, `--broker-redis` on one private Redis); devices: one process of mqtt.js clients spread over the instances' brokers, each with its own ed25519 identity; everything on the same 2 cores. One rollout, one 100% wave, created on the instance that does not hold the lease; latency from the POST to each device's first command. Memory per device: each server process's resident growth over the devices it holds.");
  say();
  for (const line of clusterTable(runs)) say(line);
  say();
}

async function main(): Promise<void> {
  const asked = process.argv.slice(2);
  const unknown = asked.filter((name) => !BENCHES.includes(name as Bench));
  if (unknown.length > 0) {
    process.stderr.write(`error: unknown benchmark ${unknown.join(", ")}; choose from ${BENCHES.join(", ")}\n`);
    process.exit(2);
  }
  const chosen = (asked.length > 0 ? asked : BENCHES) as Bench[];
  say(`## Bench run ${new Date().toISOString()} (${availableParallelism()} cores): npm run bench -- ${chosen.join(" ")}`);
  say();
  if (chosen.includes("image")) await benchImage(say);
  if (chosen.includes("fleet")) await fleet();
  if (chosen.includes("fleet-cluster")) await fleetCluster();
  if (chosen.includes("store")) await benchStore(say, progress);
  if (chosen.includes("agent") || chosen.includes("trust")) await benchTrustChain(say);
  if (chosen.includes("agent")) await benchAgent(say);
  else if (chosen.includes("agent-idle")) await benchAgentIdle(say);
  if (chosen.includes("layering")) await benchLayering(say, progress);
  if (chosen.includes("boot")) await benchBoot(say);
  await mkdir(new URL("../artifacts/", import.meta.url), { recursive: true });
  await writeFile(new URL("../artifacts/bench.md", import.meta.url), `${lines.join("\n")}\n`);
}

await main();
