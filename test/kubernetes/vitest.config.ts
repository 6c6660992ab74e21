import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// The Kubernetes suite (real etcd + kube-apiserver, and helm): `npx vitest run --config test/kubernetes/vitest.config.ts`,
// or `npm run test:kube`, which first builds the binaries with scripts/kube/tools.sh.
// Each file starts its own etcd + kube-apiserver (about 2 s, ~300 MB): files run one at a time.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/kubernetes/**/*.test.ts'],
    exclude: ['node_modules/**'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
  },
})
