import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Fetches the real test assets (pinned addresses, sha256 checked, cached) where no folder has them.
    globalSetup: ['test/global-setup.ts'],
    // Tests run real ffmpeg, onnxruntime and brokers on a 2-core machine: one file at a time keeps
    // the timing-sensitive ones (live restarts, backpressure) honest.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The JSON report is what .ci/run counts from (a run that executed nothing shows as 0 passed).
    reporters: ['default', 'json'],
    outputFile: { json: 'test-artifacts/vitest.json' },
  },
});
