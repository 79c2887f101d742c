// The runner of the focused suite inside each VM of the kernel matrix. Under emulation, vitest's own
// start (vite, its config bundle, a worker, the transform of every imported .ts) took about 90 s of a
// 6.1 VM's 400 (measured 2026-12-03); this takes seconds. test/kernel/bundle.ts bundles
// inside.test.ts with esbuild and points its `vitest` imports here: the same file stays a vitest file
// for the type check. What it offers is what the suite and its helpers use: describe, it, it.runIf,
// afterAll and vitest's own expect (@vitest/expect on chai, as vitest builds it).
import {inspect} from 'node:util'
import * as chai from 'chai'
import {JestAsymmetricMatchers, JestChaiExpect, JestExtend} from '@vitest/expect'

chai.use(JestExtend)
chai.use(JestChaiExpect)
chai.use(JestAsymmetricMatchers)

export const expect = ((value: unknown, message?: string) => chai.expect(value, message)) as unknown as typeof import('vitest').expect

interface Case {
  name: string
  fn?: () => Promise<void> | void
  timeoutMs: number
}

const cases: Case[] = []
const finals: (() => Promise<void> | void)[] = []
const prefix: string[] = []
/** Per case unless it says otherwise (as the suite's vitest config had). */
const TIMEOUT_MS = 900_000

export function describe(name: string, body: () => void): void {
  prefix.push(name)
  try {
    body()
  } finally {
    prefix.pop()
  }
}

function add(name: string, fn: Case['fn'], timeoutMs = TIMEOUT_MS): void {
  cases.push({name: [...prefix, name].join(' > '), fn, timeoutMs})
}

export const it = Object.assign(add, {
  runIf: (condition: boolean) => (name: string, fn: () => Promise<void> | void, timeoutMs?: number) => add(name, condition ? fn : undefined, timeoutMs),
})

export const afterAll = (fn: () => Promise<void> | void) => void finals.push(fn)

/** The error with what an assertion compared (vitest's reporter shows a diff of the two). */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const e = err as Error & {actual?: unknown; expected?: unknown}
  const shown = (v: unknown) => inspect(v, {depth: 8, breakLength: 120})
  return [e.stack ?? e.message, ...('expected' in e ? [`expected: ${shown(e.expected)}`, `actual:   ${shown(e.actual)}`] : [])].join('\n')
}

function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms)
  })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

/** Runs every case in order and then the afterAll hooks; the exit code is 1 when anything failed.
 * A case not run on this kernel (runIf false) is reported as skipped, never as passed. */
export async function run(): Promise<number> {
  let failed = 0
  let passed = 0
  const skipped: string[] = []
  const say = (line: string) => process.stdout.write(`${line}\n`)
  for (const c of cases) {
    if (!c.fn) {
      skipped.push(c.name)
      say(`  - ${c.name} (not on this kernel)`)
      continue
    }
    const t0 = Date.now()
    try {
      await within(c.timeoutMs, c.name, Promise.resolve().then(c.fn))
      passed++
      say(`  ✓ ${c.name} ${Date.now() - t0}ms`)
    } catch (err) {
      failed++
      say(`  ✗ ${c.name} ${Date.now() - t0}ms\n${describeError(err)}`)
    }
  }
  for (const fn of finals) {
    try {
      await within(300_000, 'afterAll', Promise.resolve().then(fn))
    } catch (err) {
      failed++
      say(`  ✗ afterAll: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
  say(`Tests: ${passed} passed, ${failed} failed, ${skipped.length} not on this kernel`)
  return failed ? 1 : 0
}
