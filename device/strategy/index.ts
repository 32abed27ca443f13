/**
 * When a staged update may reboot the device: an interface and a strategy per file, chosen by
 * the `rebootStrategy` label (Zincati's update strategies). An unknown label fails at config
 * load; a strategy that cannot decide says "not now".
 */
import type { AgentSettings } from "../config/settings.ts";
import { commandStrategy } from "./command.ts";
import { immediateStrategy } from "./immediate.ts";
import { windowStrategy } from "./window.ts";

export interface RebootStrategy {
  readonly label: AgentSettings["rebootStrategy"];
  /** May the device reboot now? */
  canRebootNow(now: Date): boolean;
  /** How long to wait before asking again; null: only an outside event (a server command) changes the answer. */
  retryInMs(now: Date): number | null;
}

export function rebootStrategy(settings: Pick<AgentSettings, "rebootStrategy" | "rebootWindow">): RebootStrategy {
  switch (settings.rebootStrategy) {
    case "immediate":
      return immediateStrategy;
    case "window":
      return windowStrategy(settings.rebootWindow);
    case "command":
      return commandStrategy;
  }
}
