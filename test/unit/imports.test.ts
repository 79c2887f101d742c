// No import cycles in src/: each module can be read (and tested) on its own. Type-only imports
// are erased at build time and do not count.
import {readdirSync, readFileSync} from 'node:fs'
import {dirname, join, relative, resolve} from 'node:path'
import {describe, expect, it} from 'vitest'

const SRC = resolve(import.meta.dirname, '../../src')

function modules(dir: string): string[] {
  return readdirSync(dir, {recursive: true, withFileTypes: true})
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name))
}

/** Value imports of a file (import … from './x.js', export … from './x.js'), as source paths. */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const out: string[] = []
  for (const m of text.matchAll(/^(?:import|export)\s+(?!type\s)([^;]*?)\s+from\s+'(\.[^']+)'/gms)) {
    const names = m[1].replace(/^\{|\}$/g, '').split(',').map((n) => n.trim())
    if (m[1].startsWith('{') && names.every((n) => n.startsWith('type ') || n === '')) continue
    out.push(resolve(dirname(file), m[2].replace(/\.js$/, '.ts')))
  }
  for (const m of text.matchAll(/await import\('(\.[^']+)'\)/g)) out.push(resolve(dirname(file), m[1].replace(/\.js$/, '.ts')))
  return out
}

export function cycles(files: string[]): string[][] {
  const graph = new Map(files.map((f) => [f, imports(f)]))
  const found: string[][] = []
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (f: string) => {
    if (state.get(f) === 'done') return
    if (state.get(f) === 'open') {
      found.push([...stack.slice(stack.indexOf(f)), f].map((p) => relative(SRC, p)))
      return
    }
    state.set(f, 'open')
    stack.push(f)
    for (const g of graph.get(f) ?? []) visit(g)
    stack.pop()
    state.set(f, 'done')
  }
  for (const f of files) visit(f)
  return found
}

describe('src/', () => {
  it('has no import cycles', () => {
    expect(cycles(modules(SRC))).toEqual([])
  })
})
