import {describe, expect, it} from 'vitest'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {argvOf, resolveTool, TRUSTED_DIRS} from '../../src/lib/exec.js'
import {cgroup2Mount, bpffsMounted, parseMounts} from '../../src/lib/host.js'
import {parseHexBytes, sumPerCpu} from '../../src/lib/tools/bpftool.js'
import {renderArgv} from '../../src/lib/render.js'
import {lineOf} from './line-of.js'

const mounts = parseMounts(
  [
    'sysfs /sys sysfs rw,nosuid 0 0',
    'cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0',
    'cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0',
    'bpf /sys/fs/bpf bpf rw 0 0',
  ].join('\n'),
)

describe('/proc/mounts', () => {
  it('finds the cgroup v2 mount wherever it is, and bpffs', () => {
    expect(cgroup2Mount(mounts)).toBe('/sys/fs/cgroup/unified')
    expect(bpffsMounted(mounts)).toBe(true)
    expect(bpffsMounted(mounts.filter((m) => m.type !== 'bpf'))).toBe(false)
    expect(cgroup2Mount(mounts.filter((m) => m.type !== 'cgroup2'))).toBeUndefined()
  })
})

describe('bpftool JSON', () => {
  it('sums per-CPU counters by key', () => {
    const dump = [
      {key: 0, values: [{cpu: 0, value: 1}, {cpu: 1, value: 3}]},
      {key: 4, values: [{cpu: 0, value: 2 ** 40}, {cpu: 1, value: 5}]},
    ]
    const sums = sumPerCpu(dump)
    expect(sums[0]).toBe(4n)
    expect(sums[4]).toBe(2n ** 40n + 5n)
  })

  it('reads hex byte lists', () => {
    expect([...parseHexBytes(['0x01', '0xff', '0x00'])]).toEqual([1, 255, 0])
  })
})

describe('exec', () => {
  it('wraps netns commands in nsenter (not ip -n, which hides bpffs pins)', () => {
    expect(argvOf({tool: 'tc', args: ['qdisc', 'show'], netns: 'lab'})).toEqual(['nsenter', '--net=/run/netns/lab', '--', 'tc', 'qdisc', 'show'])
    expect(argvOf({tool: 'ip', args: ['-j', 'link']})).toEqual(['ip', '-j', 'link'])
  })

  it('resolves tools only in trusted system directories, naming the package when missing', () => {
    expect(lineOf(() => resolveTool('bpftool', ['/nonexistent']))).toMatch(/bpftool not found .*apt-get install bpftool/)
  })

  it('never takes a program from the current folder, even one that is there and executable', () => {
    const dir = mkdtempSync(join(tmpdir(), 'skfp-cwd-'))
    writeFileSync(join(dir, 'mount'), '#!/bin/sh\necho planted\n', {mode: 0o755})
    const cwd = process.cwd()
    process.chdir(dir)
    try {
      expect(lineOf(() => resolveTool('mount', ['.']))).toMatch(/not an absolute directory/)
      const found = resolveTool('mount')
      expect(TRUSTED_DIRS.some((d) => found === `${d}/mount`), found).toBe(true)
    } finally {
      process.chdir(cwd)
      rmSync(dir, {recursive: true})
    }
  })

  it('shortens long zero runs for humans only', () => {
    expect(renderArgv(['x', 'hex', '01', ...Array(20).fill('00')])).toBe('x hex 01 00 … (20 zero bytes in all)')
    expect(renderArgv(['a', '00'])).toBe('a 00')
  })
})
