// runPlan with a fake runner: every applied step is undone in reverse on a failure, the step that
// failed on its first action is not, a failed undo is reported as a partial rollback (exit 6).
import {describe, expect, it} from 'vitest'
import {SkfpError} from '../../src/lib/errors.js'
import type {Cmd, Runner, RunResult} from '../../src/lib/exec.js'
import {Executor, runPlan, type Step} from '../../src/lib/plan.js'

/** Runs nothing: records each argv, fails the ones named. */
class ScriptedRunner implements Runner {
  readonly ran: string[] = []
  constructor(private readonly failing: string[] = []) {}
  async run(cmd: Cmd, opts: {allowFailure?: boolean} = {}): Promise<RunResult> {
    const line = [cmd.tool, ...cmd.args].join(' ')
    this.ran.push(line)
    const failed = this.failing.includes(line)
    if (failed && !opts.allowFailure) throw new SkfpError('tool', `${cmd.tool} failed (exit 1)`, 'boom')
    return {stdout: '', stderr: '', exitCode: failed ? 1 : 0}
  }
}

const step = (id: string, apply: string[], undo: string[]): Step => ({
  id,
  title: id,
  apply: apply.map((a) => ({tool: 'ip', args: a.split(' ')})),
  undo: undo.map((u) => ({tool: 'ip', args: u.split(' ')})),
})
const PLAN = [step('a', ['a1'], ['undo-a']), step('b', ['b1', 'b2'], ['undo-b']), step('c', ['c1'], ['undo-c'])]
const quiet = {renderer: 'silent' as const, log: () => {}}

describe('runPlan', () => {
  it('applies every step in order', async () => {
    const r = new ScriptedRunner()
    expect((await runPlan(PLAN, new Executor(r), quiet)).applied).toEqual(['a', 'b', 'c'])
    expect(r.ran).toEqual(['ip a1', 'ip b1', 'ip b2', 'ip c1'])
  })

  it('a failure unwinds the applied steps in reverse, the half-applied one included, and rethrows', async () => {
    const r = new ScriptedRunner(['ip b2'])
    await expect(runPlan(PLAN, new Executor(r), quiet)).rejects.toThrow(/ip failed/)
    expect(r.ran).toEqual(['ip a1', 'ip b1', 'ip b2', 'ip undo-b', 'ip undo-a'])
  })

  it('a step whose first action failed changed nothing and is not undone', async () => {
    const r = new ScriptedRunner(['ip c1'])
    await expect(runPlan(PLAN, new Executor(r), quiet)).rejects.toThrow()
    expect(r.ran).toEqual(['ip a1', 'ip b1', 'ip b2', 'ip c1', 'ip undo-b', 'ip undo-a'])
  })

  it('an undo that fails makes it a partial rollback (exit 6) naming what is left', async () => {
    const r = new ScriptedRunner(['ip c1', 'ip undo-a'])
    const e = await runPlan(PLAN, new Executor(r), quiet).catch((err: SkfpError) => err)
    expect(e).toBeInstanceOf(SkfpError)
    expect((e as SkfpError).exitCode).toBe(6)
    expect((e as SkfpError).message).toMatch(/rolling back left a: ip undo-a/)
  })

  it('a dry run runs nothing and previews every argv', async () => {
    const r = new ScriptedRunner()
    const res = await runPlan(PLAN, new Executor(r), {...quiet, dryRun: true})
    expect(r.ran).toEqual([])
    expect(res.preview.map((p) => p.argv)).toEqual([[['ip', 'a1']], [['ip', 'b1'], ['ip', 'b2']], [['ip', 'c1']]])
  })
})
