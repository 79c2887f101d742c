// The kernel matrix: Debian's kernel packages (cached by scripts/kernels.sh), each booted in a VM
// over this machine's root file system (scripts/vm-run.sh: qemu TCG, the root read-only, the project
// an overlay whose writes stay in the VM), running the focused suite test/kernel/inside.test.ts; and
// the same suite on the running kernel. The suite runs as one bundled file (test/kernel/bundle.ts,
// built here first) under a small runner (harness.ts): vitest's own start costs a minute per VM. A kernel that cannot boot fails its case, never skips it.
// What each kernel must load is stated here, from what it offers (see the README's kernel table).
import {execa} from 'execa'
import {release} from 'node:os'
import {join} from 'node:path'
import {beforeAll, describe, expect, it} from 'vitest'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {requireRoot} from '../integration/helpers.js'
import {bundleSuite} from './bundle.js'

interface Expectation {
  /** The fastpath variant the kernel loads, or none. */
  fastpath: 'kfunc' | 'probe-read' | 'none'
  /** How the memory guard measures a receiver's queue there. */
  guard: 'msg_tot_len' | 'queue-walk'
  /** Whether bpf_sk_assign takes SO_REUSEPORT sockets (v2ray's): Linux 6.5+. */
  reuseport: boolean
  /** Which readers variant of the adaptive fastpath attaches: the tracepoint sock_recv_length (Linux
   * 6.4+), else fexit on tcp_bpf_recvmsg, or none. */
  adaptive: 'tracepoint' | 'fexit' | 'none'
  /** Whether the kernel has WireGuard (Debian's kernels, as a module; this machine's has none). */
  wireguard: boolean
}

/** By the short names of scripts/kernels.sh. */
const MATRIX: Record<string, Expectation> = {
  '5.10': {fastpath: 'none', guard: 'queue-walk', reuseport: false, adaptive: 'none', wireguard: true}, // no bpf_loop, no netns cookie in sk_msg
  '6.1': {fastpath: 'probe-read', guard: 'queue-walk', reuseport: false, adaptive: 'fexit', wireguard: true}, // no bpf_rdonly_cast / bpf_cast_to_kern_ctx, no sock_recv_length
  '6.12.43': {fastpath: 'kfunc', guard: 'queue-walk', reuseport: true, adaptive: 'tracepoint', wireguard: true}, // before the sk_psock.msg_tot_len backport
  '6.12': {fastpath: 'kfunc', guard: 'msg_tot_len', reuseport: true, adaptive: 'tracepoint', wireguard: true},
  '7.x': {fastpath: 'kfunc', guard: 'msg_tot_len', reuseport: true, adaptive: 'tracepoint', wireguard: true},
}
// locked down for integrity: fexit is refused, the tracepoint taken; built without WireGuard
const RUNNING: Expectation = {fastpath: 'kfunc', guard: 'msg_tot_len', reuseport: true, adaptive: 'tracepoint', wireguard: false}

/** What the focused suite is told to expect (inside.test.ts reads SKFP_EXPECT_*). */
function expectationEnv(want: Expectation): Record<string, string> {
  return {
    SKFP_EXPECT_FASTPATH: want.fastpath,
    SKFP_EXPECT_GUARD: want.guard,
    SKFP_EXPECT_REUSEPORT: want.reuseport ? '1' : '0',
    SKFP_EXPECT_ADAPTIVE: want.adaptive,
    SKFP_EXPECT_WIREGUARD: want.wireguard ? '1' : '0',
  }
}

/** Minutes the focused suite may take in one emulated VM (about 5 measured). */
const VM_MINUTES = 12

async function cachedKernels(): Promise<{name: string; version: string; vmlinuz: string}[]> {
  const r = await execa('bash', [join(PROJECT_ROOT, 'scripts', 'kernels.sh'), '--list'], {reject: false})
  expect(r.exitCode, String(r.stderr)).toBe(0)
  return JSON.parse(String(r.stdout))
}

const summary: string[] = []

describe('kernel matrix', () => {
  let suite = ''
  beforeAll(async () => {
    suite = await bundleSuite()
  })

  it(`the running kernel (${release()})`, async () => {
    requireRoot()
    const r = await execa(process.execPath, [suite], {cwd: PROJECT_ROOT, reject: false, all: true, env: expectationEnv(RUNNING), timeout: 600_000})
    summary.push(`${release()}: exit ${r.exitCode}`)
    expect(r.exitCode, String(r.all).slice(-6000)).toBe(0)
  }, 620_000)

  it.each(Object.entries(MATRIX))('Debian kernel %s in a VM', async (name, want) => {
    requireRoot()
    const kernel = (await cachedKernels()).find((k) => k.name === name)
    expect(kernel, `kernel ${name} is not cached: scripts/kernels.sh (run by npm test's setup) downloads it`).toBeDefined()
    const env = Object.entries(expectationEnv(want)).map(([k, v]) => `${k}=${v}`)
    const inner = `cd ${PROJECT_ROOT} && ${env.join(' ')} SKFP_TEST_SLOW_MS=600000 ${process.execPath} ${suite}`
    const vmRun = join(PROJECT_ROOT, 'scripts', 'vm-run.sh')
    const r = await execa('bash', [vmRun, '--overlay', PROJECT_ROOT, '--timeout', String(VM_MINUTES * 60), kernel!.vmlinuz, '--', inner], {reject: false, all: true, timeout: (VM_MINUTES + 1) * 60_000})
    summary.push(`${kernel!.version}: exit ${r.exitCode}`)
    // 124: the suite did not finish in time; 125: the VM did not boot: both fail
    expect(r.exitCode, String(r.all).slice(-6000)).toBe(0)
  }, (VM_MINUTES + 2) * 60_000)

  it('summary', () => {
    process.stderr.write(`kernel matrix: ${summary.join('; ')}\n`)
    expect(summary).toHaveLength(1 + Object.keys(MATRIX).length)
  })
})
