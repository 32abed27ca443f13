/**
 * Keeps V8 from compiling WebAssembly with TurboFan in this process: undici parses HTTP with
 * llhttp, a WebAssembly module it compiles as it loads, and V8's optimizing tier then keeps a core
 * busy for ~0.2 s, which on a two-core device is the core `ostree static-delta apply-offline` and
 * `ostree admin deploy` need right after the download: each ran ~30 ms longer under the agent than
 * alone (docs/agent.md "Staging cost"). Liftoff, V8's baseline WebAssembly tier, parses the few
 * responses of an update just as well. Imported before undici, so the flag is set when llhttp compiles.
 */
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--liftoff-only");
