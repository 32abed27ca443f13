import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The qemu end-to-end test boots VMs for many minutes: `npm run test:e2e` runs it.
    exclude: [...configDefaults.exclude, "test/e2e/**"],
    // Integration tests share the apt cache and run real ostree/mmdebstrap on 2 cores:
    // run files one after another so they do not fight over locks and CPU.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
