// The memory floor of the agent's kind of work with Node's built-ins alone, no JS dependencies,
// CommonJS like the agent's bundle: an ed25519 signature and a sha256, a state file written with
// fsync and rename, a child process, a Unix socket listening, and an MQTT CONNECT/CONNACK with
// keepalive on TCP.
// Usage: node node-floor.cjs DIR BROKER_PORT
"use strict";
const { spawn } = require("node:child_process");
const { createHash, createPrivateKey, randomBytes, sign } = require("node:crypto");
const { open, rename } = require("node:fs/promises");
const { connect, createServer } = require("node:net");

async function main() {
  const [dir, port] = process.argv.slice(2);
  const key = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), randomBytes(32)]), format: "der", type: "pkcs8" });
  sign(null, Buffer.from("report"), key);
  createHash("sha256").update("file").digest();
  const file = await open(`${dir}/floor-state.tmp`, "w");
  await file.writeFile("{}");
  await file.sync();
  await file.close();
  await rename(`${dir}/floor-state.tmp`, `${dir}/floor-state.json`);
  await new Promise((resolve) => spawn("ostree", ["--version"], { stdio: "ignore" }).on("close", resolve));
  createServer(() => undefined).listen(`${dir}/floor.sock`);
  const id = Buffer.from("floor");
  const body = Buffer.concat([Buffer.from([0, 4]), Buffer.from("MQTT"), Buffer.from([4, 2, 0, 60, 0, id.length]), id]);
  const socket = connect(Number(port), "127.0.0.1", () => socket.write(Buffer.concat([Buffer.from([0x10, body.length]), body])));
  socket.on("data", (data) => process.stderr.write(`${JSON.stringify({ received: data.toString("hex"), at: new Date().toISOString() })}\n`));
  socket.on("error", () => undefined);
  setInterval(() => socket.write(Buffer.from([0xc0, 0])), 30_000);
}

void main();
