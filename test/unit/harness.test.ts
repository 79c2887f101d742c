// The matrix's in-VM runner (test/kernel/harness.ts): a failing, timed-out or skipped case never
// counts as passed, and any failure makes the exit code 1.
import {describe as vdescribe, expect as vexpect, it as vit, vi} from 'vitest'
import * as h from '../kernel/harness.js'

vdescribe('the kernel matrix runner', () => {
  vit('reports each case, counts a case not run on this kernel as skipped, and fails on a failed expect, a throw or a timeout', async () => {
    const order: string[] = []
    h.describe('kernel x', () => {
      h.it('passes', () => {
        h.expect({a: 1, b: [2]}).toMatchObject({b: [2]})
        order.push('passes')
      })
      h.it('fails an expect', () => h.expect(1, 'one').toBe(2))
      h.it.runIf(false)('only elsewhere', () => {
        order.push('never')
      })
      h.it('hangs', () => new Promise(() => {}), 50)
      h.it('passes after the failures', async () => {
        await h.expect(Promise.resolve(3)).resolves.toBeGreaterThan(2)
        order.push('after')
      })
    })
    h.afterAll(() => {
      order.push('afterAll')
    })
    const out: string[] = []
    const write = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true))
    let code: number
    try {
      code = await h.run()
    } finally {
      write.mockRestore()
    }
    const text = out.join('')
    vexpect(code).toBe(1)
    vexpect(order).toEqual(['passes', 'after', 'afterAll'])
    vexpect(text).toMatch(/✓ kernel x > passes \d+ms/)
    vexpect(text).toMatch(/✗ kernel x > fails an expect \d+ms\nAssertionError: one: expected 1 to be 2/)
    vexpect(text).toMatch(/expected: 2\nactual: {3}1/)
    vexpect(text).toMatch(/- kernel x > only elsewhere \(not on this kernel\)/)
    vexpect(text).toMatch(/✗ kernel x > hangs \d+ms\nError: kernel x > hangs: timed out after 50 ms/)
    vexpect(text).toMatch(/Tests: 2 passed, 2 failed, 1 not on this kernel\n$/)
  })
})
