/**
 * `skfp bench --soak MINUTES`: the proxy topology of the bench (interception + fastpath, skfp-relay)
 * under a mixed load for MINUTES — a bulk stream through the proxy (iperf3, repeated runs), short
 * connections through the proxy and over loopback (skfp-pingpong connrate), round trips over
 * loopback — while the kernel's socket and BPF memory and the sockhash are sampled. The verdict:
 * errors must be 0, and once the load has stopped and its sockets are closed, nothing may stay
 * above where it started (leak).
 */
import {programPath} from '../build.js'
import type {Counters} from '../config.js'
import {usageError} from '../errors.js'
import {resolveTool, type Runner} from '../exec.js'
import {waitForOutput} from '../iperf.js'
import type {Sandbox} from '../sandbox.js'
import {inBenchSandbox, isClean, prepareBench} from './index.js'
import {throwIfInterrupted} from '../interrupt.js'
import {down, upInterception} from './instance.js'
import {ECHO_PORT, IPERF_PORT} from './measure.js'
import {proxyTopology, REMOTE_ADDR, startRelay} from './topology.js'
import {kernelPageSize, sample} from './soak-sample.js'

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
    await upInterception({runner, name: sb.name, cgroup: sb.cgroup}, topo.host, 'all')
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
      if (signal.aborted) throwIfInterrupted()
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`
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
