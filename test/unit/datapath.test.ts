import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {DATAPATH_OBJECTS, FASTPATH_VARIANTS, pinnableSupport, READERS_VARIANTS, supportKey, type DatapathSupport} from '../../src/lib/datapath.js'
import {encodeRecord} from '../../src/lib/config.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, {recursive: true, force: true})
})

/** An object directory with every object skfp probes, and a stand-in for bpftool. */
function objects(): {dir: string; tool: string} {
  const dir = mkdtempSync(join(tmpdir(), 'skfp-unit-'))
  dirs.push(dir)
  for (const f of DATAPATH_OBJECTS) writeFileSync(join(dir, f), `object ${f}`)
  writeFileSync(join(dir, 'bpftool'), 'v1')
  return {dir, tool: join(dir, 'bpftool')}
}

describe('the pinned datapath support', () => {
  it('is keyed by the boot, every object and bpftool: a change in any of them means probing again', () => {
    const {dir, tool} = objects()
    const key = supportKey(dir, tool, 'boot-a')
    expect(supportKey(dir, tool, 'boot-a')).toBe(key)
    expect(supportKey(dir, tool, 'boot-b')).not.toBe(key)
    writeFileSync(join(dir, FASTPATH_VARIANTS[1].file), 'rebuilt')
    const rebuilt = supportKey(dir, tool, 'boot-a')
    expect(rebuilt).not.toBe(key)
    writeFileSync(join(dir, READERS_VARIANTS[0].file), 'rebuilt')
    const readers = supportKey(dir, tool, 'boot-a')
    expect(readers).not.toBe(rebuilt)
    writeFileSync(tool, 'v2 (another size)')
    expect(supportKey(dir, tool, 'boot-a')).not.toBe(readers)
  })

  it('keeps each refusal as one line, without the loader output, so it fits the pinned record', () => {
    const log = 'libbpf: ' + 'x'.repeat(20_000)
    const support: DatapathSupport = {
      kernel: '6.1.0-57-amd64',
      intercept: null,
      fastpath: 'probe-read',
      refused: [{object: 'fastpath.bpf.o', reason: 'the kernel has no kfunc bpf_cast_to_kern_ctx', log}],
    }
    const pinned = pinnableSupport(support)
    expect(pinned).toEqual({...support, refused: [{object: 'fastpath.bpf.o', reason: 'the kernel has no kfunc bpf_cast_to_kern_ctx', log: ''}]})
    expect(() => encodeRecord({key: 'k'.repeat(64), support: pinnableSupport({...support, refused: FASTPATH_VARIANTS.map((v) => ({object: v.file, reason: 'r'.repeat(5000), log}))})})).not.toThrow()
  })
})
