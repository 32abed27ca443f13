import type { RebootStrategy } from "./index.ts";

/** Reboot as soon as the update is staged. */
export const immediateStrategy: RebootStrategy = {
  label: "immediate",
  canRebootNow: () => true,
  retryInMs: () => null,
};
