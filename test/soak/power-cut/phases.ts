/**
 * Where in an update a trial cuts the power: each phase names the release rolled out, the
 * marker that starts it (a report the server received, or a line on the serial console) and
 * a window of delays after that marker, from which the trial's seed picks one. A cut may land a
 * little outside its phase (a step ended early); the trial records what was last reported before
 * the cut, so the summary shows where cuts really fell.
 */
export type PhaseName = "download" | "stage" | "finalize" | "finalize-done" | "early-boot" | "health-check" | "bless" | "rollback" | "grubenv-copy" | "grubenv-both" | "grubenv-bless";

export type Outcome = "healthy-v2" | "on-v1" | "rolled-back-v3";

export type Marker =
  /** The first report of the rollout's command in this state. */
  | { kind: "report"; state: string }
  /** The serial console shows `pattern` `count` more times than when the rollout started. */
  | { kind: "serial"; pattern: RegExp; count: number };

export interface Phase {
  name: PhaseName;
  release: "v2" | "v3";
  marker: Marker;
  /** Delay after the marker, in ms: [min, max). */
  delayMs: [number, number];
  /** Outcomes that count as a pass. */
  expected: Outcome[];
  what: string;
  /**
   * A fault done in the VM (over the test console, once it answers) right before the cut: what a
   * power cut in the middle of a write to the bootloader's environment leaves behind.
   */
  fault?: string;
}

const TRUNCATE_GRUBENV = "truncate -s 0 /boot/grub/grubenv && sync";

const KERNEL = /Linux version \d/;

export function phases(bootTries: number): Phase[] {
  // The agent stages again whatever a cut undid, so a good release must end installed; "on-v1"
  // (still on the old release, not busy) is reported but fails a v2 trial.
  const v2Outcomes: Outcome[] = ["healthy-v2"];
  return [
    { name: "download", release: "v2", marker: { kind: "report", state: "downloading" }, delayMs: [0, 3000], expected: v2Outcomes, what: "fetching the delta" },
    { name: "stage", release: "v2", marker: { kind: "report", state: "downloading" }, delayMs: [3000, 15_000], expected: v2Outcomes, what: "apply-offline and the deploy that stages it" },
    { name: "finalize", release: "v2", marker: { kind: "report", state: "rebooting" }, delayMs: [0, 10_000], expected: v2Outcomes, what: "shutdown, where ostree-finalize-staged writes the new deployment and bootloader config" },
    // Regression: right after finalize swapped /boot/loader and removed the old bootlinks, the swap was
    // only in /boot's journal, which GRUB does not replay: every boot failed (docs/boot.md, "The disk").
    { name: "finalize-done", release: "v2", marker: { kind: "serial", pattern: /Stopped .*OSTree Finalize Staged Deployment/, count: 1 }, delayMs: [0, 1000], expected: v2Outcomes, what: "the instant after finalize wrote the new bootloader config" },
    { name: "early-boot", release: "v2", marker: { kind: "serial", pattern: KERNEL, count: 1 }, delayMs: [0, 25_000], expected: v2Outcomes, what: "GRUB and the first boot of the new deployment, before its checks" },
    { name: "health-check", release: "v2", marker: { kind: "report", state: "verifying" }, delayMs: [0, 1500], expected: v2Outcomes, what: "the health checks of the new deployment" },
    { name: "bless", release: "v2", marker: { kind: "serial", pattern: /Boot healthy: 2 passed/, count: 1 }, delayMs: [0, 4000], expected: v2Outcomes, what: "the verdict, clearing the boot counter" },
    // The fallback boot is the one after the last try of v3.
    { name: "rollback", release: "v3", marker: { kind: "serial", pattern: KERNEL, count: bootTries + 1 }, delayMs: [0, 40_000], expected: ["rolled-back-v3"], what: "the fallback boot, where the agent makes the rollback permanent" },
    // The bootloader's state: grubenv torn while an update is on trial (GRUB counts on in the copy),
    // both blocks torn (GRUB falls back for one boot), grubenv garbled as the boot is blessed.
    { name: "grubenv-copy", release: "v3", marker: { kind: "serial", pattern: KERNEL, count: 1 }, delayMs: [0, 5000], expected: ["rolled-back-v3"], what: "grubenv lost during the first try of a bad release", fault: TRUNCATE_GRUBENV },
    { name: "grubenv-both", release: "v3", marker: { kind: "serial", pattern: KERNEL, count: 1 }, delayMs: [0, 5000], expected: ["rolled-back-v3"], what: "both counter blocks lost during the first try of a bad release", fault: "truncate -s 0 /boot/grub/grubenv && head -c 1024 /dev/urandom > /boot/grub/apt-ostree.env && sync" },
    { name: "grubenv-bless", release: "v2", marker: { kind: "serial", pattern: /Boot healthy: 2 passed/, count: 1 }, delayMs: [0, 3000], expected: v2Outcomes, what: "grubenv garbled as the new release is blessed", fault: "head -c 1024 /dev/urandom > /boot/grub/grubenv && sync" },
  ];
}

export const PHASE_NAMES: PhaseName[] = ["download", "stage", "finalize", "finalize-done", "early-boot", "health-check", "bless", "rollback", "grubenv-copy", "grubenv-both", "grubenv-bless"];
