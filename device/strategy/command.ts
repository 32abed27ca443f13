import type { RebootStrategy } from "./index.ts";

/** Stay staged until the server sends a signed reboot command. */
export const commandStrategy: RebootStrategy = {
  label: "command",
  canRebootNow: () => false,
  retryInMs: () => null,
};
