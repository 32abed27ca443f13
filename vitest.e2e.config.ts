import { defineConfig } from "vitest/config";

/** `npm run test:e2e`: real qemu boots (test/e2e), one step after another. */
export default defineConfig({
  test: {
    include: ["test/e2e/**/*.test.ts"],
    fileParallelism: false,
    sequence: { concurrent: false },
    testTimeout: 30 * 60_000,
    hookTimeout: 40 * 60_000,
  },
});
