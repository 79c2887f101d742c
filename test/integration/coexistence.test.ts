// Concurrency, neighbours and foreign state: skfp shares the host with itself and with others.
import {existsSync, readdirSync, rmSync, statSync} from 'node:fs'
import {instancePins} from '../../src/lib/pins.js'
import {removeLeftovers} from '../../src/lib/sandbox.js'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {expectedSha} from '../fixtures/transfer.mjs'
import {expectRedirected, foreignObject, leftovers, runner, skfp, status, transfer, upArgs, withSandbox} from './helpers.js'

const MiB = 1024 * 1024

/** The pid in the mark an up leaves in the instance directory while it works (holder.ts), once it is there. */
async function markOf(dir: string): Promise<number> {
  for (let i = 0; i < 3000; i++) {
    const mark = existsSync(dir) ? readdirSync(dir).find((e) => e.startsWith('held-by-')) : undefined
    if (mark) return Number(mark.split('-')[2])
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error(`no skfp marked ${dir} within 30 s`)
}

describe('coexistence', () => {
  it('two ups of one instance at once: one wins, the other is told who is at work and to wait; a down meanwhile too (the lock is the bpffs instance directory, marked by its holder)', async () => {
    await withSandbox('cc', async (sb) => {
      const ns = await sb.addNetns('a')
      // the first up holds its instance directory for a while (test-only pause), the others arrive meanwhile
      const first = skfp(upArgs(sb, ns), {SKFP_PAUSE_AFTER: 'lock:8000'})
      const holder = await markOf(instancePins(sb.name).dir)
      const second = await skfp(upArgs(sb, ns))
      expect(second.exitCode, second.stderr).toBe(4)
      expect(second.stderr.trim().split('\n').pop()).toBe(`skfp: instance ${sb.name} is being changed by another skfp (pid ${holder}): wait for it to finish, or stop it (Ctrl-C rolls an up back)`)
      const down = await skfp(['down', '--instance', sb.name])
      expect(down.exitCode, down.stderr).toBe(4)
      expect(down.stderr).toContain(`is being changed by another skfp (pid ${holder})`)
      expect(await status(sb.name)).toMatchObject({state: 'half-up', changingBy: holder})
      const a = await first
      expect(a.exitCode, a.stderr).toBe(0)
      expect(a.json.action).toBe('created')
      expect(await status(sb.name)).toMatchObject({state: 'up', changingBy: null})
      expect(readdirSync(instancePins(sb.name).dir).filter((e) => e.startsWith('held-by-')), 'the mark is gone with the run').toEqual([])
      const r = await transfer(sb, ns, ['pair', '--addr', '127.0.0.1', '--port', '0', '--bytes', String(4 * MiB), '--seed', 'cc'])
      expect(r.serverReceivedSha).toBe(expectedSha('cc-up', 4 * MiB))
      expect((await status(sb.name)).counters.socketsAdded).toBe(2)
    })
  })

  it('two ups that attach the fastpath to an instance up with it off: one attaches it, the other is told who is at work and undoes nothing of the first', async () => {
    await withSandbox('ca', async (sb) => {
      const ns = await sb.addNetns('a')
      const mode = (m: string) => upArgs(sb, ns).map((a) => (a === 'all' ? m : a))
      expect((await skfp(mode('off'))).exitCode).toBe(0)
      // the first holds the fastpath's map directory, its lock, for a while (test-only pause)
      const first = skfp(mode('on'), {SKFP_PAUSE_AFTER: 'load:1500'})
      const holder = await markOf(instancePins(sb.name).dir)
      expect(existsSync(instancePins(sb.name).fastpathMaps), 'the first up took the lock').toBe(true)
      const second = await skfp(mode('on'))
      expect(second.exitCode, second.stderr).toBe(4)
      expect(second.stderr.trim().split('\n').pop()).toContain(`is being changed by another skfp (pid ${holder})`)
      const a = await first
      expect(a.json, a.stderr).toMatchObject({action: 'switched', fastpath: true})
      expect(await status(sb.name)).toMatchObject({state: 'up', changingBy: null, fastpath: {enabled: true, adaptive: true}, programs: {sockops: {attached: true}, finHold: {attached: true}}})
    })
  })

  it('a sandbox swept while an up of its instance is still at work: the up is stopped, rolls back, and nothing is left', async () => {
    await withSandbox('cs', async (sb) => {
      const ns = await sb.addNetns('a')
      const up = skfp(upArgs(sb, ns), {SKFP_PAUSE_AFTER: 'record:60000'})
      const holder = await markOf(instancePins(sb.name).dir)
      expect((await status(sb.name)).changingBy).toBe(holder)
      await removeLeftovers(runner, sb.name)
      const r = await up
      expect(r.exitCode, r.stderr).toBe(143)
      expect(r.stderr).toContain('stopped by SIGTERM')
      expect(await leftovers(sb)).toEqual([])
    })
  })

  it('two ups of one instance started together: exactly one creates it, the other is refused or finds it up', async () => {
    await withSandbox('cr', async (sb) => {
      const ns = await sb.addNetns('a')
      const results = await Promise.all([skfp(upArgs(sb, ns)), skfp(upArgs(sb, ns))])
      const outcomes = results.map((r) => (r.exitCode === 0 ? r.json.action : `exit ${r.exitCode}`)).sort()
      expect(['created,unchanged', 'created,exit 4'], results.map((r) => r.stderr).join('\n')).toContain(outcomes.join(','))
      expect((await status(sb.name)).state).toBe('up')
    })
  })

  it('two instances side by side both work; down of one leaves the other intact', async () => {
    await withSandbox('s1', async (one) => {
      await withSandbox('s2', async (two) => {
        const ns1 = await one.addNetns('a')
        const ns2 = await two.addNetns('a')
        expect((await skfp(upArgs(one, ns1))).exitCode).toBe(0)
        expect((await skfp(upArgs(two, ns2))).exitCode).toBe(0)
        expect((await skfp(['down', '--instance', one.name])).exitCode).toBe(0)
        expect(await leftovers(one)).toEqual([])
        expect((await status(two.name)).state).toBe('up')
        const r = await transfer(two, ns2, ['pair', '--addr', '::1', '--port', '0', '--bytes', String(8 * MiB), '--seed', 's2'])
        expect(r.clientReceivedSha).toBe(expectedSha('s2-down', 8 * MiB))
        await expectRedirected(two.name, 2)
      })
    })
  })

  it('a foreign sock_ops program on the cgroup stays attached through up and down', async () => {
    await withSandbox('fo', async (sb) => {
      const ns = await sb.addNetns('a')
      const obj = await foreignObject()
      const dir = `/sys/fs/bpf/${sb.name}-foreign`
      const pin = `${dir}/foreign_sockops`
      await runner.run({tool: 'bpftool', args: ['prog', 'loadall', obj, dir]})
      try {
        await runner.run({tool: 'bpftool', args: ['cgroup', 'attach', sb.cgroup, 'sock_ops', 'pinned', pin, 'multi']})
        const attached = async () => JSON.parse((await runner.run({tool: 'bpftool', args: ['-j', 'cgroup', 'show', sb.cgroup]})).stdout).map((a: {name: string}) => a.name).sort()
        expect(await attached()).toEqual(['foreign_sockops'])
        expect((await skfp(upArgs(sb, ns))).exitCode).toBe(0)
        expect(await attached()).toEqual(['foreign_sockops', 'skfp_fin_hold', 'skfp_sockops'])
        const r = await transfer(sb, ns, ['pair', '--addr', '127.0.0.1', '--port', '0', '--bytes', String(4 * MiB), '--seed', 'fo'])
        expect(r.serverReceivedSha).toBe(expectedSha('fo-up', 4 * MiB))
        expect((await status(sb.name)).counters.socketsAdded).toBe(2)
        expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
        expect(await attached()).toEqual(['foreign_sockops'])
        await runner.run({tool: 'bpftool', args: ['cgroup', 'detach', sb.cgroup, 'sock_ops', 'pinned', pin]})
      } finally {
        await runner.run({tool: 'bpftool', args: ['cgroup', 'detach', sb.cgroup, 'sock_ops', 'pinned', pin]}, {allowFailure: true})
        rmSync(dir, {recursive: true, force: true})
      }
    })
  })

  it('pins are private to root: instance directories and everything in them are 0700/0600', async () => {
    await withSandbox('pm', async (sb) => {
      const ns = await sb.addNetns('a')
      expect((await skfp(upArgs(sb, ns))).exitCode).toBe(0)
      const dir = `/sys/fs/bpf/skfp/${sb.name}`
      expect(statSync('/sys/fs/bpf/skfp').mode & 0o777).toBe(0o700)
      expect(statSync(dir).mode & 0o777).toBe(0o700)
      for (const sub of ['progs', 'maps']) {
        expect(statSync(join(dir, sub)).mode & 0o077, sub).toBe(0)
        for (const f of readdirSync(join(dir, sub))) expect(statSync(join(dir, sub, f)).mode & 0o077, f).toBe(0)
      }
    })
  })
})
