/** The fault scenarios `npm run soak -- faults` knows, in the order it runs them. */
import { serverKill } from "./server-kill.ts";
import type { FaultScenario } from "./scenario.ts";

export const SCENARIOS: FaultScenario[] = [serverKill];
