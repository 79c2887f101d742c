// The entry of the matrix's in-VM bundle (test/kernel/bundle.ts): sweep what an earlier run left, as
// the vitest global setup does, register the suite, run it.
import setup from '../integration/global-setup.js'
import {run} from './harness.js'
import './inside.test.js'

await setup()
process.exitCode = await run()
