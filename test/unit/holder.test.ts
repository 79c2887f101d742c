// Who is changing an instance: the mark an up or a down leaves in its directory while it works, and
// how another skfp reads it (a live process with the same start time, never itself, never a dead one).
import {execa} from 'execa'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import type {Runner} from '../../src/lib/exec.js'
import {holdMark, liveHolder, processStart} from '../../src/lib/holder.js'
import {instanceState, observeInstance} from '../../src/lib/observe.js'
import {statusOf} from '../../src/lib/status.js'
import {refuseUnsettled} from '../../src/lib/up.js'
import {lineOf} from './line-of.js'

const tmp = mkdtempSync(join(tmpdir(), 'skfp-holder-'))
afterAll(() => rmSync(tmp, {recursive: true, force: true}))

/** A child whose command name has a space and a parenthesis, as /proc/PID/stat shows them; it
 * runs until killed. */
function oddChild() {
  const exe = join(tmp, 'a) b')
  if (!existsSync(exe)) symlinkSync('/bin/sleep', exe)
  return execa(exe, ['600'], {reject: false})
}

describe('the mark of who is changing an instance', () => {
  it('names this process by pid and start time', () => {
    expect(holdMark()).toMatch(new RegExp(`^held-by-${process.pid}-\\d+$`))
  })

  it('reads the start time past a command name with spaces and parentheses', async () => {
    const child = oddChild()
    try {
      const mine = Number(processStart(process.pid))
      const its = Number(processStart(child.pid!))
      // started after this process, at most a minute of clock ticks (100 a second) later
      expect(its).toBeGreaterThanOrEqual(mine)
      expect(its - mine).toBeLessThan(100 * (process.uptime() + 60))
    } finally {
      child.kill('SIGKILL')
      await child
    }
    expect(processStart(child.pid!)).toBeUndefined()
  })

  it('a zombie (exited, not reaped yet) is gone', async () => {
    // python's child exits at once and its parent never waits for it
    const parent = execa('python3', ['-c', 'import os, time\npid = os.fork()\nif pid == 0: os._exit(0)\nprint(pid, flush=True)\ntime.sleep(600)'], {reject: false})
    const pid = await new Promise<number>((resolve) => parent.stdout!.once('data', (d) => resolve(Number(String(d).trim()))))
    try {
      for (let i = 0; i < 100 && readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1][0] !== 'Z'; i++) await new Promise((r) => setTimeout(r, 10))
      expect(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1][0]).toBe('Z')
      expect(processStart(pid)).toBeUndefined()
    } finally {
      parent.kill('SIGKILL')
      await parent
    }
  })

  it('a live other process with the same start time holds it; itself, a reused pid or a dead process does not', async () => {
    const dir = join(tmp, 'lab')
    mkdirSync(dir)
    mkdirSync(join(dir, holdMark()))
    expect(liveHolder(dir), 'its own mark').toBeUndefined()
    const child = oddChild()
    mkdirSync(join(dir, `held-by-${child.pid}-1`))
    expect(liveHolder(dir), 'another start time: a reused pid').toBeUndefined()
    mkdirSync(join(dir, holdMark(child.pid)))
    expect(liveHolder(dir)).toBe(child.pid)
    child.kill('SIGKILL')
    await child
    expect(liveHolder(dir), 'its process is gone').toBeUndefined()
    expect(liveHolder(join(tmp, 'nothing'))).toBeUndefined()
  })

  it('observed: an up at work is refused with who and to wait, and status says it, where a crash says half up', async () => {
    const root = join(tmp, 'pins')
    mkdirSync(join(root, 'lab'), {recursive: true})
    const none: Runner = {run: async () => ({stdout: '[]', stderr: '', exitCode: 0})}
    const crashed = await observeInstance(none, 'lab', root)
    expect(instanceState(crashed)).toBe('half-up')
    expect(crashed.holder).toBeUndefined()
    expect(lineOf(() => refuseUnsettled(crashed, 'lab'))).toMatch(/is half up: no undo record .*: run `skfp down --instance lab` first/)

    const child = oddChild()
    try {
      mkdirSync(join(root, 'lab', holdMark(child.pid)))
      const busy = await observeInstance(none, 'lab', root)
      expect(busy.holder).toBe(child.pid)
      expect(lineOf(() => refuseUnsettled(busy, 'lab'))).toBe(`instance lab is being changed by another skfp (pid ${child.pid}): wait for it to finish, or stop it (Ctrl-C rolls an up back)`)
      expect(statusOf(busy)).toMatchObject({state: 'half-up', changingBy: child.pid})
    } finally {
      child.kill('SIGKILL')
      await child
    }
  })
})
