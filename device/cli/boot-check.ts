/**
 * `apt-ostree boot-check`: what apt-ostree-healthcheck.service runs before boot-complete.target.
 * It asks the running agent for this boot's verdict (the agent knows from its pending update
 * record whether a new deployment is on trial, runs the health checks, and makes a fallback's
 * rollback permanent) and exits non-zero when the boot must not be blessed. No agent answering
 * in time is a failure too: a release whose agent cannot start is not healthy.
 */
import { defineCommand, printResult } from "../../shared/cli/command.ts";
import { parseDurationSeconds } from "../../shared/duration.ts";
import { AptOstreeError } from "../../shared/errors.ts";
import { askAgent } from "../agent/control-socket.ts";
import type { BootVerdict } from "../agent/machine.ts";
import { COMMON_OPTIONS, cliSettings } from "./context.ts";

export const EXIT_BOOT_FAILED = 1;

export function renderVerdict(verdict: BootVerdict): string {
  switch (verdict.verdict) {
    case "healthy":
      return `Boot healthy: ${verdict.version} passed its health checks.`;
    case "failed":
      return `Boot failed: ${verdict.version} failed required health check${verdict.failed.length > 1 ? "s" : ""}:\n${verdict.failed.map((r) => `  ${r.name}: ${r.output.trim() || "(no output)"}`).join("\n")}`;
    case "rolled-back":
      return `Boot healthy: the bootloader fell back to ${verdict.version} and the rollback is permanent (${verdict.reason}).`;
    case "not-on-trial":
      return `Boot healthy: no update on trial (agent ${verdict.state}).`;
  }
}

export const bootCheckCommand = defineCommand({
  name: "boot-check",
  description: "Wait for the agent's verdict on this boot (run by apt-ostree-healthcheck.service before boot-complete.target).",
  options: {
    ...COMMON_OPTIONS,
    timeout: { type: "string", valueName: "DURATION", default: "10m", description: "How long to wait for the agent and its health checks" },
    json: { type: "boolean", description: "Print the verdict as JSON: {verdict, version, failed?, reason?, state?}" },
  },
  notes: [
    "Exit status: 0 when the boot may be blessed (the update passed its checks, the rollback after a fallback is permanent,",
    "or no update is on trial); 1 when a required check failed or the agent did not answer in time (the unit's failure",
    "starts apt-ostree-reboot-on-failure.service, which reboots while the boot counter has tries left); 2 on a usage error.",
  ],
  async run({ options, io }) {
    const timeoutSeconds = parseDurationSeconds(options.timeout, "timeout");
    const settings = await cliSettings(options);
    const deadline = Date.now() + timeoutSeconds * 1000;
    for (;;) {
      const left = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
      const answer = await askAgent(settings.socket, { op: "boot-verdict", timeoutSeconds: left }).catch(() => null);
      if (answer && !answer.ok) throw new AptOstreeError(answer.code, `the agent gave no verdict: ${answer.error}`);
      if (answer?.ok) {
        const verdict = answer.result as BootVerdict;
        printResult(io, options.json, verdict, renderVerdict(verdict));
        return verdict.verdict === "failed" ? EXIT_BOOT_FAILED : 0;
      }
      // Not listening yet: the agent is still starting (or cannot start at all).
      if (Date.now() > deadline) throw new AptOstreeError("E_NO_AGENT", `apt-ostreed did not answer on ${settings.socket} within ${timeoutSeconds} s`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  },
});
