/**
 * `skfp bench --soak`: a 6-second soak checks the --json contract (samples, peak, end, the load's
 * figures, errors 0, no leak) and that nothing named skfp-bench is left. The real soak (≥ 10 min)
 * belongs to the benchmark, not to the test suite.
 */
import {existsSync, mkdtempSync, readFileSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {cgroup2Mount} from '../../src/lib/host.js'
import * as ip from '../../src/lib/tools/ip.js'
import {requireRoot, runner, skfp} from './helpers.js'

const FIGURES = ['tcpMemBytes', 'socketsUsed', 'tcpInUse', 'sockhashEntries', 'bpfMemBytes']

describe('skfp bench --soak', () => {
  const out = mkdtempSync(join(tmpdir(), 'skfp-tt-soak-'))
  afterAll(() => rmSync(out, {recursive: true, force: true}))

  it('keeps the mixed load running, samples memory and the sockhash, finds no leak and no error, and leaves nothing behind', async () => {
    requireRoot()
    const r = await skfp(['bench', '--soak', '0.1', '--json', '--out', out])
    expect(r.exitCode, r.stderr).toBe(0)
    const {minutes, samples, start, peak, end, load, errors, errorDetails, leak, leaks, tolerance, clean} = r.json

    expect(minutes).toBe(0.1)
    expect(errors, errorDetails.join('; ')).toBe(0)
    expect(leak, leaks.join('; ')).toBe(false)
    expect(samples.length).toBeGreaterThanOrEqual(4)
    expect(samples[0]).toEqual(start)
    expect(samples.at(-1)).toEqual(end)
    expect(samples.map((s: {phase: string}) => s.phase)).toEqual(['start', ...Array(samples.length - 2).fill('load'), 'end'])
    for (const s of samples) {
      for (const k of FIGURES) expect(s[k], `${s.phase} ${k}`).toBeGreaterThanOrEqual(0)
      expect(s.bpfMemBytes, 'the instance has programs and maps').toBeGreaterThan(0)
      expect(s.counters).toMatchObject({socketsAdded: expect.any(Number), socketInsertFailures: 0})
    }
    for (const k of FIGURES) {
      expect(peak[k], k).toBe(Math.max(...samples.map((s: Record<string, number>) => s[k])))
      expect(tolerance[k], k).toBeGreaterThanOrEqual(0)
    }
    // the load ran, on the fastpath, and its sockets left the sockhash
    expect(load.proxyConnections).toBeGreaterThan(0)
    expect(load.loopbackConnections).toBeGreaterThan(0)
    expect(load.connections).toBe(load.proxyConnections + load.loopbackConnections)
    expect(load.bulkBytes).toBeGreaterThan(0)
    expect(load.loopbackRoundTrips).toBeGreaterThan(0)
    expect(peak.sockhashEntries).toBeGreaterThan(0)
    expect(end.counters.socketsAdded).toBeGreaterThan(0)
    expect(end.counters.bytesRedirected).toBeGreaterThan(0)
    expect(end.sockhashEntries).toBe(start.sockhashEntries)

    expect(JSON.parse(readFileSync(join(out, 'soak.json'), 'utf8'))).toEqual(r.json)
    expect(readFileSync(join(out, 'soak.svg'), 'utf8')).toMatch(/^<svg[^]*sockhash entries[^]*<\/svg>\n$/)

    expect(clean).toBe(true)
    expect((await ip.netnsList(runner)).filter((n) => n.startsWith('skfp-bench'))).toEqual([])
    expect(readdirSync(cgroup2Mount()!).filter((n) => n.startsWith('skfp-bench'))).toEqual([])
    expect(existsSync('/sys/fs/bpf/skfp/skfp-bench')).toBe(false)
  })

  it('refuses a soak that is not a number of minutes before touching anything', async () => {
    for (const bad of ['0', '-1', 'abc', '2000']) {
      const r = await skfp(['bench', '--soak', bad, '--json'])
      expect(r.exitCode, bad).toBe(2)
      expect(r.json.error.message, bad).toContain('--soak')
    }
  })
})
