// The focused suite that each VM of the kernel matrix runs (test/kernel/matrix.test.ts boots them).
// Under TCG everything is 10-30x slower than on the host: the timeouts are for that, not for speed.
import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/kernel/inside.test.ts'],
    fileParallelism: false,
    testTimeout: 900_000,
    hookTimeout: 300_000,
    globalSetup: ['test/integration/global-setup.ts'],
  },
})
