// The fastpath's hazards, probed for real: the self-test verdict, --fastpath auto following it,
// and the memory guard holding a slow reader's queue to its bound over 1 GiB each way.
import {existsSync} from 'node:fs'
import {afterAll, describe, expect, it} from 'vitest'
import {programPath} from '../../src/lib/build.js'
import {VERDICT_PIN} from '../../src/lib/pins.js'
import {removeVerdict, requireRoot, skfp, status, upArgs, withSandbox} from './helpers.js'

// what the memory guard promises to keep equal to plain TCP (splice, MSG_WAITALL and the rare
// EAGAIN of a blocking recv after a demotion are kernel behaviours the guard cannot change)
const GUARDED = ['slow-reader', 'fionread', 'halfclose', 'port-reuse', 'dualstack', 'integrity', 'two-namespaces']

afterAll(removeVerdict)

describe('kernel self-test', () => {
  it('runs every probe over plain TCP and the fastpath, pins the verdict, and auto follows it', async () => {
    requireRoot()
    const doc = await skfp(['doctor', '--rerun', '--json'])
    expect(doc.exitCode, doc.stderr).toBe(0)
    const v = doc.json.verdict
    expect(v.probes.map((p: {probe: string}) => p.probe)).toEqual(['splice', 'waitall', 'blocking-recv', 'late-blocking', 'slow-reader', 'fionread', 'halfclose', 'port-reuse', 'dualstack', 'integrity', 'two-namespaces'])
    for (const p of v.probes) expect(p.plainOk, `${p.probe} over plain TCP`).toBe(true)
    for (const p of v.probes) if (GUARDED.includes(p.probe)) expect(p.ok, `${p.probe}: ${p.detail}`).toBe(true)
    expect(v.fastpathSafe).toBe(v.probes.every((p: {ok: boolean}) => p.ok))
    // this kernel takes the adaptive fastpath, and it passes every probe: auto turns it on
    expect(v.mode).toBe('adaptive')
    expect(v.fastpathSafe, JSON.stringify(v.probes)).toBe(true)
    expect(v.limits.map((p: {probe: string}) => p.probe)).toEqual(['late-splice'])
    expect(existsSync(VERDICT_PIN)).toBe(true)

    const st = await skfp(['status', '--json'])
    expect(st.json.selfTest).toEqual(v)

    await withSandbox('au', async (sb) => {
      const ns = await sb.addNetns('a')
      const up = await skfp(upArgs(sb, ns).map((a) => (a === 'all' ? 'auto' : a)))
      expect(up.exitCode, up.stderr).toBe(0)
      expect(up.json.fastpath).toBe(v.fastpathSafe)
      if (!v.fastpathSafe) {
        // one line: which hazard, and how to force and scope it
        const line = up.stderr.trim().split('\n').find((l) => l.startsWith('fastpath off'))
        expect(line).toMatch(/^fastpath off: the kernel self-test found that on .*--fastpath on .*--cgroup$/)
        // every hazard found, in the words of the verdict
        expect(v.hazards.length).toBeGreaterThan(0)
        for (const hazard of v.hazards) expect(line).toContain(hazard)
        expect((await status(sb.name)).fastpath.enabled).toBe(false)
      }
    })
  })
})

describe('memory guard', () => {
  it('1 GiB each way with a bursty slow reader: intact both ways, host TCP memory within bound + margin, no write error', async () => {
    await withSandbox('sr', async (sb) => {
      const ns = await sb.addNetns('a')
      expect((await skfp(upArgs(sb, ns, ['--fastpath-queue', String(4 * 1024 * 1024)]))).exitCode).toBe(0)
      const r = await sb.run(ns, [programPath('skfp-probe'), 'slow-reader', '--bytes', '1G', '--burst', '4M', '--pause-ms', '10', '--timeout-ms', '170000', '--max-tcp-mem-mib', '48'], {timeoutMs: 175_000})
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!)
      expect(out.c2sIntact && out.s2cIntact, JSON.stringify(out)).toBe(true)
      expect(out.writeErrored).toBe(false)
      expect(out.braked).toBe(false)
      // the queue bound is 4 MiB per direction; plain TCP buffers account for the rest of the margin
      expect(out.tcpMemPeakGrowthBytes, JSON.stringify(out)).toBeLessThanOrEqual(48 * 1024 * 1024)
      expect(out.ok).toBe(true)
      const s = await status(sb.name)
      expect(s.counters.guardDemotions).toBeGreaterThan(0)
      expect(s.counters.bytesRedirected).toBeGreaterThan(0)
    })
  })
})
