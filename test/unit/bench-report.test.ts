import {describe, expect, it} from 'vitest'
import {medianRun, type Throughput} from '../../src/lib/bench/measure.js'
import {checkTargets, renderReport, udpWithRatios, withRatios} from '../../src/lib/bench/report.js'
import {medianUdp, type Measured, type UdpMeasured} from '../../src/lib/bench/scenarios.js'
import type {BenchResult, ScenarioName, UdpScenarioName} from '../../src/lib/bench/types.js'

const run = (gbps: number, senderPct = gbps, errors = 0, error?: string): Throughput => ({gbps, senderPct, receiverPct: 1, proxyPct: null, errors, error})

describe('medianRun', () => {
  it('keeps the median run with its own CPU figures, and every run', () => {
    const m = medianRun([run(33), run(41), run(36)])
    expect(m).toMatchObject({gbps: 36, senderPct: 36, runsGbps: [33, 41, 36], errors: 0})
  })

  it('takes the lower middle run of an even count: a figure that was measured', () => {
    expect(medianRun([run(40), run(30)]).gbps).toBe(30)
    expect(medianRun([run(5)]).runsGbps).toEqual([5])
  })

  it('adds up the errors of every run and keeps the first message', () => {
    const m = medianRun([run(30), run(0, 0, 1, 'iperf3 exit 1'), run(31, 31, 1, 'later')])
    expect(m.gbps).toBe(30)
    expect(m.errors).toBe(2)
    expect(m.error).toBe('iperf3 exit 1')
  })

  it('refuses no runs at all', () => {
    expect(() => medianRun([])).toThrow(/no runs/)
  })
})

const measured = (name: ScenarioName, throughputGbps: number, rttP50PinnedUs = 5, errors = 0): Measured => ({
  name,
  throughputGbps,
  throughputRunsGbps: [throughputGbps],
  throughputPinnedGbps: throughputGbps,
  cpu: {senderPct: 50, receiverPct: 50, proxyPct: null},
  rttP50Us: 60,
  rttP99Us: 90,
  rttP999Us: 120,
  rttP50PinnedUs,
  rttP99PinnedUs: rttP50PinnedUs * 2,
  connPerSec: 1000,
  errors,
})

describe('medianUdp', () => {
  const round = (dps: number, lost: number, errors = 0): UdpMeasured => ({
    name: 'udp-tc', datagramsPerSec: dps, throughputMbps: 1, sent: dps + lost, lost, lossPct: 0, corrupt: errors,
    rttP50Us: dps / 1000, rttP99Us: 1, rttLost: 0, errors, ...(errors ? {errorDetails: [`corrupt: ${errors}`]} : {}),
  })
  it("keeps the median round's own figures, every round's rate, and the errors of all rounds", () => {
    const m = medianUdp([round(50_000, 3), round(30_000, 9, 2), round(40_000, 5)])
    expect(m).toMatchObject({datagramsPerSec: 40_000, lost: 5, rttP50Us: 40, errors: 2, errorDetails: ['corrupt: 2'], datagramsPerSecRuns: [50_000, 30_000, 40_000]})
    expect(medianUdp([round(50_000, 0), round(30_000, 0)]).datagramsPerSec).toBe(30_000)
  })
})

describe('ratios and targets', () => {
  const outcomes = withRatios([
    measured('loopback', 20, 5),
    measured('loopback-fastpath', 33, 3.5),
    measured('uds', 30),
    measured('proxy-iptables', 10),
    measured('proxy-tc', 9),
    {name: 'proxy-v2ray-tc', skipped: 'v2ray not installed'},
  ])

  it('divides by loopback and proxy-iptables of the same run, and leaves skipped scenarios alone', () => {
    const fp = outcomes.find((o) => o.name === 'loopback-fastpath')!
    expect(fp).toMatchObject({ratios: {loopback: 1.65, proxyIptables: 3.3}})
    expect(outcomes.at(-1)).toEqual({name: 'proxy-v2ray-tc', skipped: 'v2ray not installed'})
  })

  it('checks each target: met, missed, or not measured when a scenario did not run', () => {
    const t = Object.fromEntries(checkTargets(outcomes).map((x) => [x.what, x]))
    expect(t['throughput loopback-fastpath / loopback']).toMatchObject({value: 1.65, met: true})
    expect(t['throughput loopback-fastpath / uds'].value).toBeCloseTo(1.1)
    expect(t['throughput proxy-tc / proxy-iptables']).toMatchObject({value: 0.9, met: false})
    expect(t['pinned rtt p50 loopback-fastpath / loopback']).toMatchObject({value: 0.7, met: true})
    expect(t['errors of the v2ray scenarios']).toMatchObject({value: null, met: null})
    expect(t['throughput proxy-tc-fastpath / proxy-iptables']).toMatchObject({value: null, met: null})
  })

  it('prints the median, the spread of the runs and the verdicts', () => {
    const spread = withRatios([{...measured('loopback', 22), throughputRunsGbps: [22, 21.5, 23.04]}])
    const result: BenchResult = {
      machine: {kernel: '6.18', os: 'Debian', arch: 'x64', cpus: 2, cpuModel: 'Xeon', memoryGiB: 24, skfpVersion: '0.1.0', node: 'v20', date: '2026-11-24'},
      durationS: 5,
      runs: 3,
      scenarios: spread,
      udp: [],
      apps: [],
      targets: checkTargets(spread),
      clean: true,
    }
    const text = renderReport(result)
    expect(text).toContain('throughput: median of 3 runs')
    expect(text).toMatch(/^loopback +22\.00 +21\.5–23\.0 +1\.00×/m)
    expect(text).toContain('–     throughput loopback-fastpath / loopback: not measured (≥ 1.6)')
  })

  it('UDP: datagram rates against the iptables run of the same set-up, loss and errors reported', () => {
    const udp = (name: UdpScenarioName, dps: number, lost = 0, corrupt = 0): UdpMeasured => ({
      name, datagramsPerSec: dps, throughputMbps: (dps * 1200 * 8) / 1e6, sent: dps + lost, lost, lossPct: (100 * lost) / (dps + lost), corrupt,
      rttP50Us: 80, rttP99Us: 200, rttLost: 0, errors: corrupt,
    })
    const outcomes = udpWithRatios([udp('udp-iptables', 40_000), udp('udp-tc', 42_000, 12), udp('udp-lan-iptables', 30_000), {name: 'udp-lan-tc', failed: 'v2ray did not start'}])
    expect(outcomes.map((o) => ('ratioIptables' in o ? o.ratioIptables : null))).toEqual([1, 1.05, 1, null])
    const t = Object.fromEntries(checkTargets([], outcomes).map((x) => [x.what, x]))
    expect(t['datagrams/s udp-tc / udp-iptables']).toMatchObject({value: 1.05, met: true})
    expect(t['datagrams/s udp-lan-tc / udp-lan-iptables']).toMatchObject({value: null, met: null})
    expect(t['errors of the UDP scenarios (corrupt answers included)']).toMatchObject({value: 0, met: true})
    const bad = udpWithRatios([udp('udp-tc', 1000, 0, 3)])
    expect(checkTargets([], bad).find((x) => x.what.startsWith('errors of the UDP'))).toMatchObject({value: 3, met: false})
    const text = renderReport({machine: {kernel: '6.18', os: 'Debian', arch: 'x64', cpus: 2, cpuModel: 'EPYC', memoryGiB: 8, skfpVersion: '0.1.0', node: 'v20', date: '2026-12-02'}, durationS: 5, runs: 1, scenarios: [], udp: outcomes, apps: [], targets: [], clean: true})
    expect(text).toMatch(/^udp-tc +42000 +403 +1\.05× +12\/42012 +0\.03/m)
    expect(text).toContain('udp-lan-tc: FAILED, v2ray did not start')
  })
})
