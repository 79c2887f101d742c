/**
 * `skfp bench --soak MINUTES`: the proxy topology of the bench (interception + fastpath, skfp-relay)
 * under a mixed load for MINUTES — a bulk stream through the proxy (iperf3, repeated runs), short
 * connections through the proxy and over loopback (skfp-pingpong connrate), round trips over
 * loopback — while the kernel's socket and BPF memory and the sockhash are sampled. The verdict:
 * errors must be 0, and once the load has stopped and its sockets are closed, nothing may stay
 * above where it started (leak).
 */
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {programPath} from '../build.js'
import type {Counters} from '../config.js'
import {usageError} from '../errors.js'
import {resolveTool, type Runner} from '../exec.js'
import {waitForOutput} from '../iperf.js'
import {observeInstance} from '../observe.js'
import {instancePins} from '../pins.js'
import type {Sandbox} from '../sandbox.js'
import {statusOf} from '../status.js'
import {inBenchSandbox, interrupted, isClean, prepareBench} from './index.js'
import {down, upInterception} from './instance.js'
import {ECHO_PORT, IPERF_PORT} from './measure.js'
import {proxyTopology, REMOTE_ADDR, startRelay} from './topology.js'

/** One reading. Host-wide: tcpMemBytes, socketsUsed (other work on the host shows in them too). */
export interface SoakSample {
  tSec: number
  phase: 'start' | 'load' | 'end'
  /** /proc/net/sockstat "TCP: … mem" (pages × page size): TCP buffers of the whole host. */
  tcpMemBytes: number
  /** /proc/net/sockstat "sockets: used", the whole host. */
  socketsUsed: number
  /** "TCP: inuse" of the sandbox's two namespaces: its own TCP sockets, nobody else's. */
  tcpInUse: number
  /** Entries in the instance's sockhash: accelerated sockets alive now. */
  sockhashEntries: number
  /** bytes_memlock of the instance's programs and maps (the kernel's own usage figure). */
  bpfMemBytes: number
  counters: Counters | null
  /** Short connections completed so far (through the proxy and over loopback). */
  connections: number
}

export type SoakFigures = Pick<SoakSample, 'tcpMemBytes' | 'socketsUsed' | 'tcpInUse' | 'sockhashEntries' | 'bpfMemBytes'>

/** The `skfp bench --soak --json` contract; fields are only ever added. */
export interface SoakResult {
  minutes: number
  samples: SoakSample[]
  start: SoakSample
  peak: SoakFigures
  end: SoakSample
  load: {
    connections: number
    proxyConnections: number
    loopbackConnections: number
    bulkRuns: number
    bulkBytes: number
    loopbackRoundTrips: number
  }
  /** Failed runs, connections and round trips of the load, upstream connects the relay could not make. */
  errors: number
  /** The first few errors, "load: message". */
  errorDetails: string[]
  tolerance: SoakFigures
  leak: boolean
  /** What stayed above its start value by more than the tolerance. */
  leaks: string[]
  clean: boolean
}

/** How far an end value may sit above its start value without counting as a leak. */
export const TOLERANCE: SoakFigures = {
  // host-wide, so other traffic moves it: the start and end values are minima of several readings
  tcpMemBytes: 8 * 2 ** 20,
  socketsUsed: 64,
  // the sandbox's own: sockets closed by the kernel a moment late
  tcpInUse: 8,
  sockhashEntries: 0,
  bpfMemBytes: 64 * 2 ** 10,
}

const LOOPBACK_ECHO_PORT = 7173
const BULK_RUN_S = 30
const CONNRATE_RUN_MS = 10_000
const RTT_ROUNDS = 20_000
const SETTLE_MS = 10_000
const MAX_ERROR_DETAILS = 10

/** --soak MINUTES: a positive number of minutes, fractions allowed (the test soaks for 6 s), at most a day. */
export function parseMinutes(text: string): number {
  const n = Number(text)
  if (!/^\d*\.?\d+$/.test(text.trim()) || !(n > 0) || n > 24 * 60) throw usageError(`--soak ${text}: not a number of minutes`, 'give minutes between 0 and 1440, e.g. --soak 10 (fractions allowed: --soak 0.5)')
  return n
}

export interface SoakOptions {
  minutes: number
  say: (line: string) => void
}

export async function runSoak(runner: Runner, opts: SoakOptions): Promise<SoakResult> {
  await prepareBench(runner)
  const result = await inBenchSandbox(runner, opts.say, async ({sb, signal}) => {
    const topo = await proxyTopology(sb, 'tc')
    await upInterception({runner, name: sb.name, cgroup: sb.cgroup}, topo.host, true)
    try {
      return await soak(runner, sb, topo, opts, signal)
    } finally {
      await down({runner, name: sb.name, cgroup: sb.cgroup})
    }
  })
  return {...result, clean: await isClean(runner)}
}

class Tally {
  errors = 0
  details: string[] = []
  proxyConnections = 0
  loopbackConnections = 0
  bulkRuns = 0
  bulkBytes = 0
  loopbackRoundTrips = 0

  fail(what: string, count: number, message: string | undefined): void {
    this.errors += count
    if (count > 0 && this.details.length < MAX_ERROR_DETAILS) this.details.push(`${what}: ${message ?? 'failed'}`)
  }
}

async function soak(runner: Runner, sb: Sandbox, topo: {host: string; remote: string}, opts: SoakOptions, signal: AbortSignal): Promise<Omit<SoakResult, 'clean'>> {
  const durationMs = opts.minutes * 60_000
  const intervalMs = Math.min(10_000, Math.max(1000, durationMs / 10))
  const pageSize = kernelPageSize()
  const tally = new Tally()

  const relay = await startRelay(sb, topo.host)
  const servers = [
    sb.start(topo.remote, [resolveTool('iperf3'), '-s', '-p', String(IPERF_PORT), '--forceflush']),
    sb.start(topo.remote, [programPath('skfp-pingpong'), 'server', '--listen', `${REMOTE_ADDR}:${ECHO_PORT}`]),
    sb.start(topo.host, [programPath('skfp-pingpong'), 'server', '--listen', `127.0.0.1:${LOOPBACK_ECHO_PORT}`]),
  ]
  await Promise.all(servers.map((s, i) => waitForOutput(s, i === 0 ? /Server listening/ : /listening/)))
  // sockstat of a namespace is read through a process inside it
  const nsPids = [relay.pid, servers[0].pid!]
  const read = (phase: SoakSample['phase'], t0: number) => sample(runner, sb.name, nsPids, pageSize, phase, t0, tally.proxyConnections + tally.loopbackConnections)

  const t0 = performance.now()
  const start = await settled(read, 'start', t0, 3, 500)
  const samples: SoakSample[] = [start]
  opts.say(`soak: ${opts.minutes} min, a sample every ${intervalMs / 1000} s; start: ${line(start)}`)

  const deadline = Date.now() + durationMs
  const remainingMs = () => deadline - Date.now()
  const going = () => remainingMs() > 0 && !signal.aborted
  const load = Promise.all([
    repeat(going, () => bulk(sb, topo.host, Math.max(1, Math.min(BULK_RUN_S, Math.ceil(remainingMs() / 1000))), tally)),
    repeat(going, () => connrate(sb, topo.host, REMOTE_ADDR, ECHO_PORT, 2, Math.min(CONNRATE_RUN_MS, remainingMs()), tally, 'proxy')),
    repeat(going, async () => {
      await roundTrips(sb, topo.host, tally)
      if (going()) await connrate(sb, topo.host, '127.0.0.1', LOOPBACK_ECHO_PORT, 1, Math.min(CONNRATE_RUN_MS / 2, remainingMs()), tally, 'loopback')
    }),
  ])
  let loading = true
  const stopped = () => (loading = false)
  load.then(stopped, stopped)
  while (loading) {
    await Promise.race([load, sleep(intervalMs)])
    if (!loading || signal.aborted) break
    const s = await read('load', t0)
    samples.push(s)
    opts.say(`  ${(s.tSec / 60).toFixed(1)} min: ${line(s)}`)
  }
  await load
  signal.throwIfAborted()

  // the load has stopped and its clients have exited: the servers and the relay stay, idle with
  // their listeners as at the start, until the end reading
  const end = await settled(read, 'end', t0, 5, SETTLE_MS / 5, (s) => s.sockhashEntries <= start.sockhashEntries && s.tcpInUse <= start.tcpInUse)
  signal.throwIfAborted()
  samples.push(end)
  tally.fail('relay', await relay.stop(), 'upstream connects failed')
  for (const s of servers) s.kill('SIGTERM')
  await Promise.allSettled(servers)
  opts.say(`end: ${line(end)}`)

  const leaks = (Object.keys(TOLERANCE) as (keyof SoakFigures)[]).filter((k) => end[k] - start[k] > TOLERANCE[k]).map((k) => `${k}: ${start[k]} → ${end[k]} (tolerance +${TOLERANCE[k]})`)
  return {
    minutes: opts.minutes,
    samples,
    start,
    peak: peakOf(samples),
    end,
    load: {
      connections: tally.proxyConnections + tally.loopbackConnections,
      proxyConnections: tally.proxyConnections,
      loopbackConnections: tally.loopbackConnections,
      bulkRuns: tally.bulkRuns,
      bulkBytes: tally.bulkBytes,
      loopbackRoundTrips: tally.loopbackRoundTrips,
    },
    errors: tally.errors,
    errorDetails: tally.details,
    tolerance: TOLERANCE,
    leak: leaks.length > 0,
    leaks,
  }

  async function repeat(more: () => boolean, once: () => Promise<void>): Promise<void> {
    while (more()) {
      await once()
      if (signal.aborted) throw interrupted()
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`
const line = (s: SoakSample) => `TCP mem ${MiB(s.tcpMemBytes)} (host), ${s.tcpInUse} TCP sockets, ${s.sockhashEntries} in the sockhash, BPF ${MiB(s.bpfMemBytes)}, ${s.connections} connections`

/**
 * A reading that ignores other work on the host: `readings` readings `gapMs` apart (fewer once
 * done() holds), keeping the first one's time, the lowest host-wide figures and the last of the
 * sandbox's own.
 */
async function settled(
  read: (phase: SoakSample['phase'], t0: number) => Promise<SoakSample>,
  phase: SoakSample['phase'],
  t0: number,
  readings: number,
  gapMs: number,
  done: (s: SoakSample) => boolean = () => false,
): Promise<SoakSample> {
  let best = await read(phase, t0)
  for (let i = 1; i < readings && !done(best); i++) {
    await sleep(gapMs)
    const s = await read(phase, t0)
    best = {...s, tSec: best.tSec, tcpMemBytes: Math.min(best.tcpMemBytes, s.tcpMemBytes), socketsUsed: Math.min(best.socketsUsed, s.socketsUsed)}
  }
  return best
}

function peakOf(samples: SoakSample[]): SoakFigures {
  const max = (k: keyof SoakFigures) => Math.max(...samples.map((s) => s[k]))
  return {tcpMemBytes: max('tcpMemBytes'), socketsUsed: max('socketsUsed'), tcpInUse: max('tcpInUse'), sockhashEntries: max('sockhashEntries'), bpfMemBytes: max('bpfMemBytes')}
}

async function sample(runner: Runner, instance: string, nsPids: number[], pageSize: number, phase: SoakSample['phase'], t0: number, connections: number): Promise<SoakSample> {
  const host = parseSockstat(readFileSync('/proc/net/sockstat', 'utf8'))
  const tcpInUse = nsPids.map((pid) => parseSockstat(readFileSync(`/proc/${pid}/net/sockstat`, 'utf8')).tcpInUse).reduce((a, b) => a + b, 0)
  const status = statusOf(await observeInstance(runner, instance))
  return {
    tSec: Math.round((performance.now() - t0) / 100) / 10,
    phase,
    tcpMemBytes: host.tcpMemPages * pageSize,
    socketsUsed: host.socketsUsed,
    tcpInUse,
    sockhashEntries: status.fastpath.sockets ?? 0,
    bpfMemBytes: await bpfMemory(runner, instancePins(instance).dir),
    counters: status.counters,
    connections,
  }
}

export function parseSockstat(text: string): {socketsUsed: number; tcpInUse: number; tcpMemPages: number} {
  const field = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN)
  return {socketsUsed: field(/^sockets: used (\d+)/m), tcpInUse: field(/^TCP: inuse (\d+)/m), tcpMemPages: field(/^TCP:.* mem (\d+)/m)}
}

/** The page size sockstat counts in (4 KiB, 16 KiB or 64 KiB depending on the kernel). */
function kernelPageSize(): number {
  const kb = /^KernelPageSize:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps', 'utf8'))
  return kb ? Number(kb[1]) * 1024 : 4096
}

interface BpfObject {
  id: number
  bytes_memlock?: number
  map_ids?: number[]
  pinned?: string[]
}

/** bytes_memlock of the programs pinned under dir and of every map they use or that is pinned there. */
export async function bpfMemory(runner: Runner, dir: string): Promise<number> {
  const show = async (what: 'prog' | 'map') => JSON.parse((await runner.run({tool: 'bpftool', args: ['-j', '-f', what, 'show']})).stdout || '[]') as BpfObject[]
  const mine = (o: BpfObject) => (o.pinned ?? []).some((p) => p.startsWith(`${dir}/`))
  const progs = (await show('prog')).filter(mine)
  const mapIds = new Set(progs.flatMap((p) => p.map_ids ?? []))
  const maps = (await show('map')).filter((m) => mapIds.has(m.id) || mine(m))
  return [...progs, ...maps].reduce((sum, o) => sum + (o.bytes_memlock ?? 0), 0)
}

/** One iperf3 run through the proxy. */
async function bulk(sb: Sandbox, ns: string, seconds: number, tally: Tally): Promise<void> {
  const r = await sb.run(ns, [resolveTool('iperf3'), '-c', REMOTE_ADDR, '-p', String(IPERF_PORT), '-t', String(seconds), '-J'], {timeoutMs: (seconds + 30) * 1000, allowFailure: true})
  tally.bulkRuns++
  try {
    const j = JSON.parse(r.stdout)
    tally.bulkBytes += j.end?.sum_received?.bytes ?? 0
    tally.fail('bulk', r.exitCode === 0 && !j.error ? 0 : 1, j.error ?? `iperf3 exit ${r.exitCode}`)
  } catch {
    tally.fail('bulk', 1, `iperf3: ${(r.stderr || r.stdout).slice(-200)}`)
  }
}

/** Short connections (1 byte each way, closed with RST) for ms milliseconds. */
async function connrate(sb: Sandbox, ns: string, addr: string, port: number, parallel: number, ms: number, tally: Tally, what: 'proxy' | 'loopback'): Promise<void> {
  const duration = Math.max(100, Math.round(ms))
  const argv = [programPath('skfp-pingpong'), 'connrate', '--connect', `${addr}:${port}`, '--duration-ms', String(duration), '--parallel', String(parallel), '--rst']
  const j = lastJson((await sb.run(ns, argv, {allowFailure: true, timeoutMs: duration + 30_000})).stdout)
  if (what === 'proxy') tally.proxyConnections += j?.connections ?? 0
  else tally.loopbackConnections += j?.connections ?? 0
  tally.fail(`${what} connrate`, j ? (j.errors ?? 1) : 1, j?.firstError ?? j?.error ?? 'no result')
}

/** 1 KiB round trips over one loopback connection (the fastpath). */
async function roundTrips(sb: Sandbox, ns: string, tally: Tally): Promise<void> {
  const argv = [programPath('skfp-pingpong'), 'rtt', '--connect', `127.0.0.1:${LOOPBACK_ECHO_PORT}`, '--count', String(RTT_ROUNDS), '--size', '1024']
  const j = lastJson((await sb.run(ns, argv, {allowFailure: true, timeoutMs: 120_000})).stdout)
  tally.loopbackRoundTrips += j?.count ?? 0
  tally.fail('loopback rtt', j ? (j.errors ?? 1) : 1, j?.error ?? 'no result')
}

function lastJson(stdout: string): any {
  try {
    return JSON.parse(stdout.trim().split('\n').pop()!)
  } catch {
    return undefined
  }
}

/** Human summary. */
export function renderSoak(r: SoakResult): string {
  const row = (what: string, k: keyof SoakFigures, fmt: (n: number) => string = String) => `  ${what.padEnd(28)} ${fmt(r.start[k]).padStart(10)} ${fmt(r.peak[k]).padStart(10)} ${fmt(r.end[k]).padStart(10)}`
  return [
    `soak: ${r.minutes} min, ${r.samples.length} samples; ${r.load.connections} short connections (${r.load.proxyConnections} through the proxy, ${r.load.loopbackConnections} over loopback), ${r.load.bulkRuns} bulk runs (${(r.load.bulkBytes / 2 ** 30).toFixed(1)} GiB), ${r.load.loopbackRoundTrips} loopback round trips`,
    `  ${''.padEnd(28)} ${'start'.padStart(10)} ${'peak'.padStart(10)} ${'end'.padStart(10)}`,
    row('TCP memory (host)', 'tcpMemBytes', MiB),
    row('sockets used (host)', 'socketsUsed'),
    row('TCP sockets (sandbox)', 'tcpInUse'),
    row('sockhash entries', 'sockhashEntries'),
    row('BPF memory (instance)', 'bpfMemBytes', MiB),
    `errors: ${r.errors}${r.errorDetails.length ? ` (${r.errorDetails.join('; ')})` : ''}`,
    `leak: ${r.leak ? `YES: ${r.leaks.join('; ')}` : 'no'}`,
  ].join('\n')
}

/** --out DIR: soak.json (the --json document) and soak.svg. */
export function saveSoak(dir: string, result: SoakResult): string[] {
  mkdirSync(dir, {recursive: true})
  const files = [join(dir, 'soak.json'), join(dir, 'soak.svg')]
  writeFileSync(files[0], `${JSON.stringify(result, null, 2)}\n`)
  writeFileSync(files[1], renderSoakChart(result))
  return files
}

const W = 640
const H = 160
const LEFT = 70
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')

/** One panel: a line per series over the soak's time, scaled to the largest value of the panel. */
function linePanel(title: string, samples: SoakSample[], series: {label: string; color: string; value: (s: SoakSample) => number}[], unit: (n: number) => string, top: number): string {
  const tMax = Math.max(...samples.map((s) => s.tSec), 1e-9)
  const vMax = Math.max(...samples.flatMap((s) => series.map((l) => l.value(s))), 1e-9)
  const x = (t: number) => LEFT + (t / tMax) * W
  const y = (v: number) => top + 28 + H - (v / vMax) * H
  const lines = series.map((l, i) => {
    const points = samples.map((s) => `${x(s.tSec).toFixed(1)},${y(l.value(s)).toFixed(1)}`).join(' ')
    return `<polyline fill="none" stroke="${l.color}" stroke-width="2" points="${points}"/><text x="${LEFT + 8 + i * 200}" y="${top + 28 + H + 30}" fill="${l.color}">${esc(l.label)}</text>`
  })
  return [
    `<text x="16" y="${top + 16}" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${LEFT}" y1="${top + 28 + H}" x2="${LEFT + W}" y2="${top + 28 + H}" stroke="#999"/>`,
    `<text x="${LEFT - 6}" y="${top + 32}" text-anchor="end">${esc(unit(vMax))}</text>`,
    `<text x="${LEFT - 6}" y="${top + 28 + H}" text-anchor="end">0</text>`,
    `<text x="${LEFT + W}" y="${top + 28 + H + 14}" text-anchor="end">${(tMax / 60).toFixed(1)} min</text>`,
    ...lines,
  ].join('\n')
}

export function renderSoakChart(r: SoakResult): string {
  const panelH = H + 70
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${LEFT + W + 40}" height="${40 + 2 * panelH}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="16" y="20" fill="#555">skfp bench --soak ${r.minutes}: ${r.load.connections} connections, ${r.errors} errors, leak: ${r.leak ? 'yes' : 'no'}</text>`,
    linePanel('Memory', r.samples, [{label: 'TCP memory (host)', color: '#3b7dd8', value: (s) => s.tcpMemBytes}, {label: 'BPF memory (instance)', color: '#e07b39', value: (s) => s.bpfMemBytes}], mib, 32),
    linePanel('Sockets', r.samples, [{label: 'sockhash entries', color: '#3b7dd8', value: (s) => s.sockhashEntries}, {label: 'TCP sockets (sandbox)', color: '#e07b39', value: (s) => s.tcpInUse}], String, 32 + panelH),
    '</svg>',
    '',
  ].join('\n')
}
