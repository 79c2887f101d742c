/**
 * scripts/vm-run.sh when qemu/vng exits before the command in the VM started (seen in CI: exit 255
 * after 3 s, nothing printed; once twice in a row; the next starts booted): it starts the VM again,
 * up to three times in all, and a third such exit fails with 125. vng is replaced on PATH by a stand-in that fails its first starts and
 * then runs the VM's command script in a network namespace of its own (what vm-run hands the VM),
 * so the test needs no VM.
 */
import {execa} from 'execa'
import {chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {requireRoot} from './helpers.js'

describe('vm-run.sh', () => {
  const dir = mkdtempSync(join(tmpdir(), 'skfp-t-vmrun-'))
  afterAll(() => rmSync(dir, {recursive: true, force: true}))
  const kernel = join(dir, 'vmlinuz-0.0.0-skfp-t')
  writeFileSync(kernel, '')

  /** A vng that says a line and exits 255 on its first `failures` starts (counted in a file), then runs the command
   * script (its last argument: "bash …/cmd.sh") in a new network namespace, as the VM would. */
  function fakeVng(name: string, failures: number): {path: string; starts: () => number} {
    const bin = join(dir, name)
    const count = join(dir, `${name}.starts`)
    writeFileSync(count, '')
    mkdirSync(bin)
    const vng = join(bin, 'vng')
    writeFileSync(
      vng,
      `#!/bin/bash
echo start >>${count}
(($(wc -l <${count}) <= ${failures})) && { echo 'no qemu today' >&2; exit 255; }
exec unshare -n \${!#}
`,
    )
    chmodSync(vng, 0o755)
    return {path: `${bin}:${process.env.PATH}`, starts: () => readFileSync(count, 'utf8').split('\n').filter(Boolean).length}
  }

  const vmRun = (path: string) => execa('bash', [join(PROJECT_ROOT, 'scripts', 'vm-run.sh'), '--timeout', '60', kernel, '--', 'ip -o link show lo | grep -q UP && exit 7'], {reject: false, env: {PATH: path}, timeout: 90_000})

  it('starts the VM again when vng exits before the command started, and says so with what vng said', async () => {
    requireRoot()
    const vng = fakeVng('twice', 2)
    const r = await vmRun(vng.path)
    expect(r.stderr).toContain('exited before the command started (vng exit 255, said: no qemu today ); starting it again (2 of 3)')
    expect(r.stderr).toContain('starting it again (3 of 3)')
    // the command ran (with the loopback the script brings up) and its exit code came back
    expect(r.exitCode, r.stderr).toBe(7)
    expect(vng.starts()).toBe(3)
  })

  it('fails with 125 when the third start exits early too', async () => {
    requireRoot()
    const vng = fakeVng('thrice', 3)
    const r = await vmRun(vng.path)
    expect(r.exitCode, r.stderr).toBe(125)
    expect(r.stderr).toMatch(/did not boot or could not start the command \(vng exit 255/)
    expect(vng.starts()).toBe(3)
  })
})
