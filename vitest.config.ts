import { defineConfig } from 'vitest/config';

// Unit and integration tests first, in parallel; then the browser end-to-end tests, one file at a
// time, so Chromium, servers and workers do not compete with the engine tests for the 2 cores.
export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, test: { name: 'unit', include: ['tests/**/*.test.ts'], sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'e2e', include: ['e2e/**/*.test.ts'], fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
