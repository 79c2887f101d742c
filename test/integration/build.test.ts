// skfp build: compiles with the real clang, skips what is current, names the package when clang is missing.
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {requireRoot, skfp} from './helpers.js'

describe('skfp build', () => {
  it('skips up-to-date outputs and builds the --debug variant beside the normal one', async () => {
    requireRoot()
    const first = await skfp(['build', '--json'])
    expect(first.exitCode, first.stderr).toBe(0)
    const again = await skfp(['build', '--json'])
    expect(again.json.objects.every((o: {rebuilt: boolean}) => !o.rebuilt)).toBe(true)
    expect(again.json.programs.map((p: {output: string}) => p.output.split('/').pop())).toEqual(expect.arrayContaining(['skfp-attach', 'skfp-probe', 'skfp-relay', 'skfp-pingpong', 'skfp-run']))

    const debug = await skfp(['build', '--debug', '--json'])
    expect(debug.exitCode, debug.stderr).toBe(0)
    const obj = join(PROJECT_ROOT, 'build', 'bpfel-debug', 'fastpath.bpf.o')
    expect(existsSync(obj)).toBe(true)
    // the tracing build carries bpf_printk's format strings; the normal one does not
    const traces = (file: string) => readFileSync(file).includes('skfp: ')
    expect(traces(obj)).toBe(true)
    expect(traces(join(PROJECT_ROOT, 'build', 'bpfel', 'fastpath.bpf.o'))).toBe(false)
    // one intercept object, one fastpath object per variant, the adaptive fastpath's readers object
    expect(again.json.objects.map((o: {output: string}) => o.output.split('/').pop())).toEqual(['intercept.bpf.o', 'fastpath.bpf.o', 'fastpath-compat.bpf.o', 'readers.bpf.o', 'readers-fexit.bpf.o'])
  })

  it('clang missing: one line naming the package', async () => {
    requireRoot()
    const r = await skfp(['build'], {}, ['/usr/bin/unshare', '--mount', '--propagation', 'private', process.execPath, join(PROJECT_ROOT, 'test', 'fixtures', 'without-tool.mjs'), 'clang', '--'])
    expect(r.exitCode).toBe(3)
    expect(r.stderr.trim()).toMatch(/^skfp: clang not found in .*: install it: apt-get install clang$/)
  })
})
