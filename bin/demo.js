#!/usr/bin/env node
// Runs the demo (server/demo.ts) straight from a checkout.
import { register } from "tsx/esm/api";

register();
await import("../server/demo.ts");
