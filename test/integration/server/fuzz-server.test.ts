/**
 * CI's slice of the server's hostile-input campaign (test/fuzz/server-fuzz.ts): a fixed seed and
 * fifteen hundred cases against a real `serve` process. `npm run fuzz -- server --minutes N` runs
 * the same for longer; a seed that once failed is kept in REGRESSION_SEEDS.
 */
import { describe, expect, it } from "vitest";
import { fuzzSeed } from "../../fuzz/prng.ts";
import { renderReport } from "../../fuzz/report.ts";
import { fuzzServer } from "../../fuzz/server-fuzz.ts";

/** Seeds that once found a failure, replayed first. */
const REGRESSION_SEEDS: number[] = [];
const CASES = Number(process.env.APT_OSTREE_FUZZ_CASES ?? 1500);

describe("the server under hostile input", () => {
  it.each([...REGRESSION_SEEDS.map((seed) => [seed, 100]), [fuzzSeed(18_2026), CASES]])("stays up, bounded and truthful (seed %i, %i cases)", async (seed, cases) => {
    const report = await fuzzServer({ seed, cases });
    expect(report.failures, renderReport(report)).toEqual([]);
    expect(report.cases).toBe(cases);
    // The campaign reached the refusals it is meant to provoke.
    const reasons = Object.keys(report.refusals).join(" ");
    expect(reasons).toMatch(/reports_total\{outcome="malformed"\}/);
    expect(reasons).toMatch(/reports_total\{outcome="bad-signature"\}/);
    expect(reasons).toMatch(/http 40[0-9]/);
  }, 300_000);
});
