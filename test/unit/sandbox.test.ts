// The sandbox sweep removes every namespace, root-level cgroup and temp dir whose name starts with a
// sandbox's name: a name outside skfp's own prefix is refused before anything runs.
import {describe, expect, it} from 'vitest'
import type {Cmd, Runner, RunResult} from '../../src/lib/exec.js'
import {removeLeftovers, Sandbox} from '../../src/lib/sandbox.js'

class RecordingRunner implements Runner {
  readonly calls: Cmd[] = []
  async run(cmd: Cmd): Promise<RunResult> {
    this.calls.push(cmd)
    return {stdout: '', stderr: '', exitCode: 0}
  }
}

describe('sandbox names', () => {
  for (const name of ['system', 'user', 'init', 'skfp-', 'skfp', 'Skfp-x'])
    it(`refuses ${JSON.stringify(name)} before running anything`, async () => {
      const runner = new RecordingRunner()
      await expect(removeLeftovers(runner, name)).rejects.toThrow(/does not start with skfp-/)
      await expect(Sandbox.create(runner, name)).rejects.toThrow(/does not start with skfp-/)
      expect(runner.calls).toEqual([])
    })
})
