/** Ratios, the targets of the issue, and the human table. Pure: figures in, figures and text out. */
import type {Measured, UdpMeasured} from './scenarios.js'
import {isMeasured, type AppScenarioOutcome, type AppScenarioResult, type BenchResult, type FailedScenario, type ScenarioName, type ScenarioOutcome, type ScenarioResult, type SkippedScenario, type Target, type UdpScenarioName, type UdpScenarioOutcome, type UdpScenarioResult} from './types.js'

/** Which iptables scenario each UDP one is compared with. */
const UDP_BASELINE: Record<UdpScenarioName, UdpScenarioName> = {'udp-iptables': 'udp-iptables', 'udp-tc': 'udp-iptables', 'udp-lan-iptables': 'udp-lan-iptables', 'udp-lan-tc': 'udp-lan-iptables'}

/** Datagram rates against the iptables TPROXY run of the same set-up. */
export function udpWithRatios(outcomes: (UdpMeasured | SkippedScenario | FailedScenario)[]): UdpScenarioOutcome[] {
  const measured = outcomes.filter((o) => isMeasured<UdpMeasured>(o)) as UdpMeasured[]
  return outcomes.map((o) => {
    if (!isMeasured<UdpMeasured>(o)) return o
    const base = measured.find((m) => m.name === UDP_BASELINE[o.name as UdpScenarioName])
    return {...o, ratioIptables: base?.datagramsPerSec ? o.datagramsPerSec / base.datagramsPerSec : null}
  })
}

/** Throughput ratios against loopback and proxy-iptables of the same run. */
export function withRatios(outcomes: (Measured | SkippedScenario | FailedScenario)[]): ScenarioOutcome[] {
  const gbps = (name: ScenarioName) => outcomes.filter((o) => isMeasured<Measured>(o)).find((m) => m.name === name)?.throughputGbps
  const ratio = (a: number, b: number | undefined) => (b ? a / b : null)
  return outcomes.map((o) => (isMeasured<Measured>(o) ? {...o, ratios: {loopback: ratio(o.throughputGbps, gbps('loopback')), proxyIptables: ratio(o.throughputGbps, gbps('proxy-iptables'))}} : o))
}

/** The targets, checked on one run (null: a scenario they need did not run). */
export function checkTargets(outcomes: ScenarioOutcome[], udp: UdpScenarioOutcome[] = [], apps: AppScenarioOutcome[] = []): Target[] {
  const get = (name: ScenarioName) => outcomes.filter((o) => isMeasured<ScenarioResult>(o)).find((r) => r.name === name)
  const ratio = (a: ScenarioName, b: ScenarioName, field: 'throughputGbps' | 'rttP50PinnedUs' = 'throughputGbps') => {
    const x = get(a)?.[field]
    const y = get(b)?.[field]
    return x !== undefined && y ? x / y : null
  }
  const atLeast = (what: string, value: number | null, min: number): Target => ({what, value, goal: `≥ ${min}`, met: value === null ? null : value >= min})
  const atMost = (what: string, value: number | null, max: number): Target => ({what, value, goal: `≤ ${max}`, met: value === null ? null : value <= max})
  const udpGot = (name: UdpScenarioName) => udp.filter((o) => isMeasured<UdpScenarioResult>(o)).find((r) => r.name === name) as UdpScenarioResult | undefined
  const udpMeasured = udp.filter((o) => isMeasured<UdpScenarioResult>(o)) as UdpScenarioResult[]
  const udpErrors = udpMeasured.length ? udpMeasured.reduce((n, r) => n + r.errors, 0) : null
  const v2ray = [get('proxy-v2ray-tc'), get('proxy-v2ray-tc-fastpath')]
  const v2rayErrors = v2ray.every(Boolean) ? v2ray.reduce((n, r) => n + r!.errors, 0) : null
  return [
    atLeast('throughput loopback-fastpath / loopback', ratio('loopback-fastpath', 'loopback'), 1.6),
    atLeast('throughput loopback-fastpath / uds', ratio('loopback-fastpath', 'uds'), 0.9),
    atLeast('throughput proxy-tc-fastpath / proxy-iptables', ratio('proxy-tc-fastpath', 'proxy-iptables'), 1.6),
    atLeast('throughput proxy-tc / proxy-iptables', ratio('proxy-tc', 'proxy-iptables'), 0.95),
    atMost('pinned rtt p50 loopback-fastpath / loopback', ratio('loopback-fastpath', 'loopback', 'rttP50PinnedUs'), 0.75),
    atMost('errors of the v2ray scenarios', v2rayErrors, 0),
    atLeast('throughput loopback-fastpath (guarded) / loopback-fastpath-unguarded', ratio('loopback-fastpath', 'loopback-fastpath-unguarded'), 0.9),
    atLeast('throughput lan-tc / lan-iptables', ratio('lan-tc', 'lan-iptables'), 0.95),
    atLeast('datagrams/s udp-tc / udp-iptables', udpGot('udp-tc')?.ratioIptables ?? null, 0.9),
    atLeast('datagrams/s udp-lan-tc / udp-lan-iptables', udpGot('udp-lan-tc')?.ratioIptables ?? null, 0.9),
    atMost('errors of the UDP scenarios (corrupt answers included)', udpErrors, 0),
    // every application at least as fast with skfp's defaults; the request/response ones 1.2× faster
    ...apps.map((a) => atLeast(`requests/s ${a.name} defaults / plain`, isApp(a) ? a.ratioDefaults : null, a.name.includes('large') ? 1.0 : 1.2)),
    atMost('errors of the application scenarios', apps.some(isApp) ? apps.filter(isApp).reduce((n, a) => n + a.errors, 0) : null, 0),
  ]
}

const isApp = (a: AppScenarioOutcome): a is AppScenarioResult => !('skipped' in a) && !('failed' in a)

const f = (n: number | null | undefined, digits = 1) => (n === null || n === undefined ? '–' : n.toFixed(digits))
const x = (n: number | null) => (n === null ? '–' : `${n.toFixed(2)}×`)

function table(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n')
}

export function renderReport(result: BenchResult): string {
  const m = result.machine
  const measured = result.scenarios.filter((s) => isMeasured<ScenarioResult>(s))
  const skipped = result.scenarios.flatMap((s) => ('skipped' in s ? [`  ${s.name}: skipped, ${s.skipped}`] : 'failed' in s ? [`  ${s.name}: FAILED, ${s.failed}`] : []))
  const header = ['scenario', 'Gbit/s', 'runs min–max', '×loopback', '×iptables', 'pinned Gbit/s', 'CPU% snd/rcv/proxy', 'rtt µs p50/p99/p99.9', 'pinned p50', 'pinned p99', 'conn/s', 'errors']
  const rows = measured.map((s) => [
    s.name,
    f(s.throughputGbps, 2),
    s.throughputRunsGbps.length > 1 ? `${f(Math.min(...s.throughputRunsGbps))}–${f(Math.max(...s.throughputRunsGbps))}` : '–',
    x(s.ratios.loopback),
    x(s.ratios.proxyIptables),
    f(s.throughputPinnedGbps, 2),
    `${f(s.cpu.senderPct, 0)}/${f(s.cpu.receiverPct, 0)}/${f(s.cpu.proxyPct, 0)}`,
    `${f(s.rttP50Us)}/${f(s.rttP99Us)}/${f(s.rttP999Us)}`,
    f(s.rttP50PinnedUs, 2),
    f(s.rttP99PinnedUs, 2),
    f(s.connPerSec, 0),
    String(s.errors),
  ])
  const udpRows = (result.udp ?? []).flatMap((s) =>
    isMeasured<UdpScenarioResult>(s)
      ? [[s.name, f(s.datagramsPerSec, 0), f(s.throughputMbps, 0), x(s.ratioIptables), `${s.lost}/${s.sent}`, f(s.lossPct, 2), `${f(s.rttP50Us)}/${f(s.rttP99Us)}`, String(s.rttLost), String(s.errors)]]
      : [],
  )
  const udpSkipped = (result.udp ?? []).flatMap((s) => ('skipped' in s ? [`  ${s.name}: skipped, ${s.skipped}`] : 'failed' in s ? [`  ${s.name}: FAILED, ${s.failed}`] : []))
  const apps = result.apps ?? []
  const appRows = apps.filter(isApp).map((a) => [a.name, f(a.plain, 0), f(a.defaults, 0), x(a.ratioDefaults), a.defaultsFastpath ? 'on' : 'off', f(a.fastpathOn, 0), x(a.ratioOn), String(a.errors)])
  const appSkipped = apps.flatMap((s) => ('skipped' in s ? [`  ${s.name}: skipped, ${s.skipped}`] : 'failed' in s ? [`  ${s.name}: FAILED, ${s.failed}`] : []))
  const targets = result.targets.map((t) => `  ${t.met === null ? '–   ' : t.met ? 'met ' : 'MISS'}  ${t.what}: ${t.value === null ? 'not measured' : t.value.toFixed(3)} (${t.goal})`)
  return [
    `${m.os}, kernel ${m.kernel}, ${m.arch}, ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB; skfp ${m.skfpVersion}; ${result.durationS} s per run; throughput: median of ${result.runs} run${result.runs === 1 ? '' : 's'}`,
    '',
    table(header, rows),
    ...(udpRows.length ? ['', table(['UDP scenario', 'datagrams/s', 'Mbit/s', '×iptables', 'lost/sent', 'loss %', 'rtt µs p50/p99', 'rtt lost', 'errors'], udpRows)] : []),
    ...(appRows.length ? ['', table(['application', 'plain req/s', 'defaults req/s', '×plain', 'fastpath', '--fastpath on req/s', '×plain', 'errors'], appRows)] : []),
    ...(skipped.length + udpSkipped.length + appSkipped.length ? ['', 'not measured:', ...skipped, ...udpSkipped, ...appSkipped] : []),
    '',
    'targets:',
    ...targets,
  ].join('\n')
}
