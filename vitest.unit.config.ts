// `npm run test:unit`: the pure tests alone. No global setup: they never touch the host (the
// integration suite's setup sweeps skfp-tt* sandboxes, which would break a suite running beside it).
import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
  },
})
