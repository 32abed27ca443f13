/** The fault scenarios `npm run soak -- faults` knows, in the order it runs them. */
import { clockAhead, clockBehind } from "./clock-skew.ts";
import { networkCut } from "./network-cut.ts";
import type { FaultScenario } from "./scenario.ts";
import { serverKill } from "./server-kill.ts";
import { varFull } from "./var-full.ts";

export const SCENARIOS: FaultScenario[] = [serverKill, varFull, clockBehind, clockAhead, networkCut];
