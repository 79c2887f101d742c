// Bad input: each case exits non-zero with one line naming the problem and the fix, and the
// host (programs, maps, pins, rules, routes, qdiscs, filters, sysctls) is exactly as before.
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {skfp, withSandbox} from './helpers.js'
import {hostSnapshot} from './snapshot.js'

type Case = [name: string, args: (ctx: {ns: string; cg: string; file: string}) => string[], exitCode: number, line: RegExp]

/** `skfp up` with good flags, some replaced (value undefined: flag left out). */
const up = (ctx: {ns: string; cg: string}, over: Record<string, string | undefined> = {}, extra: string[] = []) => {
  const flags: Record<string, string | undefined> = {instance: 'skfp-ttbad', netns: ctx.ns, cgroup: ctx.cg, ...over}
  return ['up', ...Object.entries(flags).flatMap(([k, v]) => (v === undefined ? [] : [`--${k}=${v}`])), ...extra]
}

export const cases: Case[] = [
  ['instance with /', (c) => up(c, {'instance': 'a/b'}), 2, /bad instance name .*a-z, 0-9 and -/],
  ['instance ..', (c) => up(c, {'instance': '..'}), 2, /bad instance name/],
  ['instance with a space', (c) => up(c, {'instance': 'a b'}), 2, /bad instance name/],
  ['instance with ;', (c) => up(c, {'instance': 'a;reboot'}), 2, /bad instance name/],
  ['instance with $(…)', (c) => up(c, {'instance': '$(id)'}), 2, /bad instance name/],
  ['instance of 33 characters', (c) => up(c, {instance: 'a'.repeat(33)}), 2, /bad instance name/],
  ['instance starting with -', (c) => up(c, {'instance': '-rf'}), 2, /bad instance name/],
  ['proxy mark -1', (c) => up(c, {'proxy-mark': '-1'}), 2, /--proxy-mark "-1" is out of range: give a whole number from 0 to 4294967295/],
  ['proxy mark abc', (c) => up(c, {'proxy-mark': 'abc'}), 2, /--proxy-mark "abc" is out of range/],
  ['proxy mark 2^32', (c) => up(c, {'proxy-mark': '4294967296'}), 2, /out of range/],
  ['fastpath mode', (c) => up(c, {'fastpath': 'yes'}), 2, /--fastpath "yes" is not a mode: use on, off or auto/],
  ['fastpath queue too small', (c) => up(c, {'fastpath-queue': '10'}), 2, /--fastpath-queue "10" is out of range/],
  ['unknown netns', (c) => up(c, {'netns': 'skfp-tt-nonexistent'}), 2, /netns skfp-tt-nonexistent does not exist: create it with `ip netns add NAME`/],
  ['netns escaping /run/netns', (c) => up(c, {'netns': '../../etc/passwd'}), 2, /bad netns name/],
  ['netns that is an option', (c) => up(c, {'netns': '--help'}), 2, /bad netns name/],
  ['cgroup that does not exist', (c) => up(c, {'cgroup': `${c.cg}/nope`}), 2, /cgroup .* does not exist/],
  ['cgroup that is a file', (c) => up(c, {cgroup: c.file}), 2, /is not a directory: pass a cgroup v2 directory/],
  ['cgroup that is not cgroup v2', (c) => up(c, {'cgroup': '/tmp'}), 2, /is not a cgroup v2 directory/],
  ['status of a bad instance', () => ['status', '--instance', '../x'], 2, /bad instance name/],
  ['down of a bad instance', () => ['down', '--instance', 'A'], 2, /bad instance name/],
  ['unknown flag', (c) => up(c, {}, ['--frobnicate']), 2, /^skfp: Nonexistent flag: --frobnicate: see `skfp up --help`$/],
]

describe('bad input is refused cleanly, host unchanged', () => {
  it.each(cases)('%s', async (_name, args, exitCode, line) => {
    await withSandbox('bad', async (sb) => {
      const ns = await sb.addNetns('a')
      const file = join(PROJECT_ROOT, 'build', 'not-a-cgroup')
      writeFileSync(file, '')
      const before = await hostSnapshot([ns], sb.cgroup)
      const r = await skfp(args({ns, cg: sb.cgroup, file}))
      expect(r.exitCode, r.stderr).toBe(exitCode)
      const lines = r.stderr.trim().split('\n')
      expect(lines.length, r.stderr).toBe(1)
      expect(lines[0]).toMatch(line)
      expect(await hostSnapshot([ns], sb.cgroup)).toEqual(before)
    })
  })

  it('not root: refused before anything changes', async () => {
    await withSandbox('nr', async (sb) => {
      const ns = await sb.addNetns('a')
      const before = await hostSnapshot([ns], sb.cgroup)
      const r = await skfp(up({ns, cg: sb.cgroup}), {HOME: '/tmp'}, ['/usr/bin/setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'])
      expect(r.exitCode).toBe(3)
      expect(r.stderr.trim()).toBe('skfp: skfp needs root: run it with sudo, or as root')
      expect(await hostSnapshot([ns], sb.cgroup)).toEqual(before)
    })
  })

  it('bpftool missing: names the package, changes nothing', async () => {
    await withSandbox('nt', async (sb) => {
      const ns = await sb.addNetns('a')
      const before = await hostSnapshot([ns], sb.cgroup)
      const r = await skfp(up({ns, cg: sb.cgroup}), {}, ['/usr/bin/unshare', '--mount', '--propagation', 'private', process.execPath, join(PROJECT_ROOT, 'test', 'fixtures', 'without-tool.mjs'), 'bpftool', '--'])
      expect(r.exitCode).toBe(3)
      expect(r.stderr.trim()).toMatch(/^skfp: bpftool not found in .*: install it: apt-get install bpftool$/)
      expect(await hostSnapshot([ns], sb.cgroup)).toEqual(before)
    })
  })
})
