/**
 * `skfp bench`: a short run (1 s per scenario, two throughput runs, a subset) checks the --json contract, that every
 * scenario completed with 0 errors and positive figures, and that the host is clean afterwards.
 * The speed targets belong to the benchmark itself, not to the test suite.
 */
import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import * as ip from '../../src/lib/tools/ip.js'
import {VERDICT_PIN} from '../../src/lib/pins.js'
import {interruptedAt, namedLeftovers, removeVerdict, requireRoot, runner, skfp} from './helpers.js'

const SCENARIOS = ['loopback', 'loopback-fastpath', 'uds', 'proxy-iptables', 'proxy-tc', 'proxy-tc-fastpath', 'lan-iptables', 'lan-tc']
const UDP = ['udp-iptables', 'udp-tc', 'udp-lan-iptables', 'udp-lan-tc']
const APPS = ['redis-get', 'redis-get-pipelined', 'nginx-small-c1', 'nginx-large-c8', 'gorelay-nginx-large-c1']

describe('skfp bench', () => {
  const out = mkdtempSync(join(tmpdir(), 'skfp-tt-bench-'))
  afterAll(() => rmSync(out, {recursive: true, force: true}))

  it('runs the scenarios one after another (TCP and UDP in rotating rounds), prints the documented JSON, writes it with a chart, and leaves nothing behind', async () => {
    requireRoot()
    const rulesBefore = await ip.rules(runner, 4)
    // no verdict this boot: the applications' defaults run the self-test, whose verdict the bench removes
    removeVerdict()
    const r = await skfp(['bench', '--duration', '1', '--runs', '2', '--scenarios', [...SCENARIOS, ...UDP, ...APPS].join(','), '--json', '--out', out])
    expect(r.exitCode, r.stderr).toBe(0)
    const {machine, runs, scenarios, udp, apps, targets, clean} = r.json
    expect(runs).toBe(2)

    expect(machine).toMatchObject({kernel: expect.any(String), os: expect.any(String), cpus: expect.any(Number), cpuModel: expect.any(String), skfpVersion: expect.any(String)})
    expect(scenarios.map((s: {name: string}) => s.name)).toEqual(SCENARIOS)
    // the TCP scenarios rotate, then the UDP ones: every one's first round runs before any second round
    const rounds = [...r.stderr.matchAll(/^(\S+), round (\d) of 2…$/gm)].map((m) => `${m[1]} ${m[2]}`)
    const inRounds = (names: string[]) => [...names.map((s) => `${s} 1`), ...names.map((s) => `${s} 2`)]
    expect(rounds).toEqual([...inRounds(SCENARIOS), ...inRounds(UDP)])
    for (const s of scenarios) {
      expect(s, s.name).not.toHaveProperty('failed')
      expect(s, s.name).not.toHaveProperty('skipped')
      expect(s.errors, `${s.name}: ${s.errorDetails}`).toBe(0)
      for (const k of ['throughputGbps', 'throughputPinnedGbps', 'rttP50Us', 'rttP99Us', 'rttP999Us', 'rttP50PinnedUs', 'rttP99PinnedUs', 'connPerSec']) expect(s[k], `${s.name} ${k}`).toBeGreaterThan(0)
      // two unpinned runs, the lower one counts (the lower middle of an even count)
      expect(s.throughputRunsGbps, s.name).toHaveLength(2)
      expect(s.throughputGbps, s.name).toBe(Math.min(...s.throughputRunsGbps))
      expect(s.cpu.senderPct, s.name).toBeGreaterThan(0)
      expect(s.cpu.receiverPct, s.name).toBeGreaterThan(0)
      if (s.name.startsWith('proxy-') || s.name.startsWith('lan-')) expect(s.cpu.proxyPct, s.name).toBeGreaterThan(0)
      else expect(s.cpu.proxyPct, s.name).toBeNull()
      if (s.name.endsWith('-fastpath')) expect(s.redirectedBytes, `${s.name}: the fastpath carried the traffic`).toBeGreaterThan(0)
      expect(s.ratios.loopback, s.name).toBeGreaterThan(0)
      expect(s.ratios.proxyIptables, s.name).toBeGreaterThan(0)
    }
    // UDP through v2ray: datagrams answered intact, loss counted (not required to be 0: UDP may drop)
    expect(udp.map((s: {name: string}) => s.name)).toEqual(UDP)
    for (const s of udp) {
      expect(s, s.name).not.toHaveProperty('failed')
      expect(s.errors, `${s.name}: ${s.errorDetails}`).toBe(0)
      expect(s.corrupt, s.name).toBe(0)
      expect(s.datagramsPerSec, s.name).toBeGreaterThan(0)
      // two rounds, the lower one's figures count
      expect(s.datagramsPerSecRuns, s.name).toHaveLength(2)
      expect(s.datagramsPerSec, s.name).toBe(Math.min(...s.datagramsPerSecRuns))
      expect(s.sent, s.name).toBeGreaterThan(0)
      expect(s.lost, s.name).toBeGreaterThanOrEqual(0)
      expect(s.lossPct, s.name).toBeCloseTo((100 * s.lost) / s.sent, 2)
      expect(s.rttP50Us, s.name).toBeGreaterThan(0)
      expect(s.ratioIptables, s.name).toBeGreaterThan(0)
    }
    // real applications with their own clients: plain, skfp's defaults and --fastpath on, each served
    expect(apps.map((s: {name: string}) => s.name)).toEqual(APPS)
    for (const s of apps) {
      expect(s, s.name).not.toHaveProperty('failed')
      expect(s.errors, s.name).toBe(0)
      for (const k of ['plain', 'defaults', 'fastpathOn', 'ratioDefaults', 'ratioOn']) expect(s[k], `${s.name} ${k}`).toBeGreaterThan(0)
      // this kernel takes the adaptive fastpath and its self-test passes: the defaults turn it on
      expect(s.defaultsFastpath, s.name).toBe(true)
    }
    expect(targets.length).toBeGreaterThan(0)
    for (const t of targets) expect(t).toMatchObject({what: expect.any(String), goal: expect.any(String)})

    expect(JSON.parse(readFileSync(join(out, 'bench.json'), 'utf8'))).toEqual(r.json)
    expect(readFileSync(join(out, 'bench.svg'), 'utf8')).toMatch(/^<svg[^]*loopback-fastpath[^]*<\/svg>\n$/)

    // nothing named skfp-bench is left, and the host's own routing rules are as they were
    expect(clean).toBe(true)
    expect(await namedLeftovers('skfp-bench')).toEqual([])
    expect(existsSync(VERDICT_PIN)).toBe(false)
    expect(await ip.rules(runner, 4)).toEqual(rulesBefore)
  })

  it('Ctrl-C in the middle of a measurement: exits 130, writes no report, leaves nothing behind', async () => {
    requireRoot()
    const rulesBefore = await ip.rules(runner, 4)
    const dir = join(out, 'interrupted')
    // the second scenario is measured through interception and the fastpath: an instance is up then
    const r = await interruptedAt(['bench', '--duration', '2', '--runs', '1', '--scenarios', 'loopback,proxy-tc-fastpath', '--out', dir], /proxy-tc-fastpath, round 1 of 1/, 'SIGINT')
    expect(r.exitCode, r.all).toBe(130)
    expect(r.all).toContain('skfp: stopped by SIGINT')
    expect(existsSync(dir), 'no report of an interrupted run').toBe(false)
    expect(await namedLeftovers('skfp-bench')).toEqual([])
    expect(await ip.rules(runner, 4)).toEqual(rulesBefore)
  })

  it('refuses an unknown scenario before touching anything', async () => {
    const r = await skfp(['bench', '--scenarios', 'loopback,nope', '--json'])
    expect(r.exitCode).toBe(2)
    expect(r.json.error.message).toContain('nope')
  })
})
