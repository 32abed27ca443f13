#!/usr/bin/env node
// Runs the TypeScript entry point straight from a checkout (tsx compiles on load).
import { register } from "tsx/esm/api";

register();
await import("../device/cli.ts");
