import { defineConfig } from 'vitest/config'

// Integration tests spawn real redis-server processes; keep parallelism modest on 2-core machines.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['test/kubernetes/**', 'node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    maxWorkers: 2,
  },
})
