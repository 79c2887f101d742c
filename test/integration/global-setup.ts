// Before the suite: sweep what a crashed earlier run left (everything named TEST_PREFIX*).
import {ExecaRunner} from '../../src/lib/exec.js'
import {removeLeftovers} from '../../src/lib/sandbox.js'
import {TEST_PREFIX} from './prefix.js'

export default async function setup(): Promise<void> {
  if (process.getuid?.() !== 0) return // unit tests still run; integration tests fail loudly on their own
  await removeLeftovers(new ExecaRunner(), TEST_PREFIX)
}
