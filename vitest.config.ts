import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // run inside each VM of the kernel matrix (test/kernel/matrix.test.ts), not on the host directly
    exclude: ['test/kernel/inside.test.ts', 'node_modules/**'],
    // integration tests share one kernel and two CPUs: one file at a time
    fileParallelism: false,
    // a file's describe.concurrent blocks (crash.test.ts: cases in namespaces of their own) two at a time
    maxConcurrency: 2,
    testTimeout: 180_000,
    hookTimeout: 120_000,
    globalSetup: ['test/integration/global-setup.ts'],
  },
})
