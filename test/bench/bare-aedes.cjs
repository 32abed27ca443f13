// The floor of the fleet benchmarks: aedes alone on TCP, in memory, no hooks (every client and
// publish allowed), nothing stored. Usage: node bare-aedes.cjs PORT; prints "ready" once listening.
"use strict";
const { createServer } = require("node:net");
const aedes = require("aedes").createBroker();

createServer(aedes.handle).listen(Number(process.argv[2]), "127.0.0.1", () => process.stdout.write("ready\n"));
