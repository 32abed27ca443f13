import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { createComposeProgress } from "../../../server/compose/progress.ts";

function capture(isTTY: boolean) {
  const stream = Object.assign(new PassThrough(), { isTTY, columns: 80 }) as unknown as NodeJS.WriteStream & PassThrough;
  let text = "";
  stream.on("data", (chunk) => (text += chunk));
  return { stream, text: () => text };
}

describe("compose progress", () => {
  it("draws one rewritten line on a terminal with the phase and packages fetched", () => {
    const out = capture(true);
    const progress = createComposeProgress(pino({ level: "silent" }), out.stream);
    progress.phase("mmdebstrap", "downloading packages with apt...");
    progress.packages(12, 164);
    progress.done();
    expect(out.text()).toMatch(/\r\x1b\[2K\[00:00\] mmdebstrap: downloading packages with apt\.\.\./);
    expect(out.text()).toMatch(/\r\x1b\[2K\[00:00\] mmdebstrap: fetched 12\/164 packages\n$/);
  });

  it("logs pino events when stderr is not a terminal", () => {
    const logged = capture(false);
    const log = pino({ level: "info", base: null, timestamp: false }, logged.stream);
    const progress = createComposeProgress(log, capture(false).stream);
    progress.phase("commit", "debian/bookworm/qemu-amd64/appliance-minimal version 2");
    progress.packages(164, 164);
    const events = logged.text().trim().split("\n").map((line) => JSON.parse(line));
    expect(events).toEqual([
      expect.objectContaining({ event: "compose.phase", phase: "commit" }),
      expect.objectContaining({ event: "compose.packages", fetched: 164, total: 164 }),
    ]);
  });
});
