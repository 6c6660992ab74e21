import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// The image suite: `npm run test:image`, which first builds the image with scripts/image/build.sh
// (buildah, a debootstrap stand-in base; ~2 min warm, ~4 min cold), then runs the built image with
// runc. REDIS_GATEWAY_IMAGE_TEST=1 is what makes test/image/*.test.ts run: the main suite (which
// also matches test/**/*.test.ts) reports them as skipped instead of failing on a missing image.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/image/**/*.test.ts'],
    exclude: ['node_modules/**'],
    env: { REDIS_GATEWAY_IMAGE_TEST: '1' },
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
  },
})
