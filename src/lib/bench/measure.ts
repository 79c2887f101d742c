/**
 * One measurement each: throughput (iperf3 -J), round trips and connection rate (skfp-pingpong,
 * skfp-uds), CPU of a running process (/proc/PID/stat). A failed run counts as errors with zero
 * figures, so the other measurements and scenarios still run.
 */
import {readFileSync} from 'node:fs'
import {programPath} from '../build.js'
import {resolveTool, runProgram} from '../exec.js'
import {waitForOutput} from '../iperf.js'
import type {Sandbox} from '../sandbox.js'

export const IPERF_PORT = 5201
export const ECHO_PORT = 7171
export const ECHO_PINNED_PORT = 7172
/** The CPU both ends (and the proxy) are pinned to for the pinned round trip. */
export const PIN_CPU = 0
const RTT_SIZE = 64

/** Clock ticks per second of /proc/PID/stat (USER_HZ): 100 on every Linux architecture skfp runs on. */
const USER_HZ = 100

/** utime + stime of every thread of a process, in seconds. */
export function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // fields after "(comm)": state is field 3, utime 14, stime 15
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ
}

/** Starts counting a process's CPU; the returned function gives percent of one CPU since then. */
export function cpuMeter(pid: number): () => number {
  const cpu0 = processCpuSeconds(pid)
  const t0 = performance.now()
  return () => (100 * (processCpuSeconds(pid) - cpu0)) / ((performance.now() - t0) / 1000)
}

export interface Throughput {
  gbps: number
  senderPct: number
  receiverPct: number
  proxyPct: number | null
  errors: number
  error?: string
}

/** The median item by key: the lower of the two middle ones for an even count (always an item that
 * was measured). */
export function lowerMedianBy<T>(items: T[], key: (item: T) => number): T {
  return [...items].sort((a, b) => key(a) - key(b))[Math.floor((items.length - 1) / 2)]
}

/** Several runs of one throughput measurement: the median run's figures, every run's Gbit/s. */
export interface Throughputs extends Throughput {
  runsGbps: number[]
}

/**
 * The median of the runs by Gbit/s (the lower of the two middle ones for an even count: always a
 * figure that was measured), with its CPU figures; errors add up over all runs, the first error is kept.
 */
export function medianRun(runs: Throughput[]): Throughputs {
  if (runs.length === 0) throw new Error('medianRun: no runs')
  const median = lowerMedianBy(runs, (r) => r.gbps)
  const error = runs.find((r) => r.error)?.error
  return {...median, errors: runs.reduce((n, r) => n + r.errors, 0), error, runsGbps: runs.map((r) => r.gbps)}
}

/**
 * iperf3 from clientNs to connect:IPERF_PORT, the server in serverNs. Sender and receiver CPU are
 * iperf3's own figures (getrusage of each process over the test); the proxy's comes from /proc.
 * pinned: both ends on PIN_CPU (iperf3 -A), which takes the scheduler's placement out of the figure.
 */
export async function throughput(
  sb: Sandbox,
  at: {clientNs: string; serverNs: string; connect: string; proxyPid?: number; serversOutsideCgroup?: boolean},
  seconds: number,
  pinned = false,
): Promise<Throughput> {
  const bin = resolveTool('iperf3')
  const server = sb.start(at.serverNs, [bin, '-s', '-1', '-p', String(IPERF_PORT), '--forceflush'], {outsideCgroup: at.serversOutsideCgroup})
  await waitForOutput(server, /Server listening/)
  const proxyCpu = at.proxyPid ? cpuMeter(at.proxyPid) : undefined
  const r = await sb.run(at.clientNs, [bin, '-c', at.connect, '-p', String(IPERF_PORT), '-t', String(seconds), '-J', ...(pinned ? ['-A', `${PIN_CPU},${PIN_CPU}`] : [])], {timeoutMs: (seconds + 20) * 1000, allowFailure: true})
  const proxyPct = proxyCpu ? proxyCpu() : null
  server.kill('SIGTERM')
  await server
  try {
    const end = JSON.parse(r.stdout).end
    const cpu = end.cpu_utilization_percent
    return {gbps: end.sum_received.bits_per_second / 1e9, senderPct: cpu.host_total, receiverPct: cpu.remote_total, proxyPct, errors: r.exitCode === 0 ? 0 : 1, error: r.exitCode === 0 ? undefined : `iperf3 exit ${r.exitCode}`}
  } catch {
    return {gbps: 0, senderPct: 0, receiverPct: 0, proxyPct, errors: 1, error: `iperf3: ${(r.stderr || r.stdout).slice(-200)}`}
  }
}

export interface RoundTrips {
  p50Us: number
  p99Us: number
  p999Us: number
  errors: number
  error?: string
}

export const rttCount = (seconds: number) => Math.min(20_000, 5_000 * seconds)

function parseRtt(stdout: string): RoundTrips {
  try {
    const j = JSON.parse(stdout.trim().split('\n').pop()!)
    return {p50Us: j.p50Us ?? 0, p99Us: j.p99Us ?? 0, p999Us: j.p999Us ?? 0, errors: j.errors ?? 1, error: j.error}
  } catch {
    return {p50Us: 0, p99Us: 0, p999Us: 0, errors: 1, error: `no result: ${stdout.slice(0, 200)}`}
  }
}

/**
 * The two echo servers of a TCP scenario (one free to run anywhere, one pinned to PIN_CPU); returns
 * their stop. outsideCgroup: they stand for the world, whose sockets the fastpath never pairs with.
 */
export async function startEchoServers(sb: Sandbox, serverNs: string, listen: string, outsideCgroup = false): Promise<() => Promise<void>> {
  const servers: ReturnType<Sandbox['start']>[] = []
  for (const [port, pin] of [[ECHO_PORT, []], [ECHO_PINNED_PORT, ['--cpu', String(PIN_CPU)]]] as const) {
    const server = sb.start(serverNs, [programPath('skfp-pingpong'), 'server', '--listen', `${listen}:${port}`, ...pin], {outsideCgroup})
    servers.push(server)
    await waitForOutput(server, /listening/)
  }
  return async () => {
    for (const s of servers) s.kill('SIGTERM')
    await Promise.allSettled(servers)
  }
}

/** 64-byte ping-pong over one TCP connection; pinned: the client on PIN_CPU, against the pinned server. */
export async function tcpRoundTrips(sb: Sandbox, clientNs: string, connect: string, seconds: number, pinned: boolean): Promise<RoundTrips> {
  const port = pinned ? ECHO_PINNED_PORT : ECHO_PORT
  const argv = [programPath('skfp-pingpong'), 'rtt', '--connect', `${connect}:${port}`, '--count', String(rttCount(seconds)), '--size', String(RTT_SIZE), ...(pinned ? ['--cpu', String(PIN_CPU)] : [])]
  return parseRtt((await sb.run(clientNs, argv, {allowFailure: true, timeoutMs: 60_000})).stdout)
}

export interface ConnRate {
  perSec: number
  errors: number
  error?: string
}

function parseConnRate(stdout: string): ConnRate {
  try {
    const j = JSON.parse(stdout.trim().split('\n').pop()!)
    return {perSec: j.perSec ?? 0, errors: j.errors ?? 1, error: j.firstError ?? j.error}
  } catch {
    return {perSec: 0, errors: 1, error: `no result: ${stdout.slice(0, 200)}`}
  }
}

/** Short connections (connect, 1 byte each way, close with RST so no TIME_WAIT piles up), 2 threads. */
export async function tcpConnRate(sb: Sandbox, clientNs: string, connect: string, seconds: number): Promise<ConnRate> {
  const argv = [programPath('skfp-pingpong'), 'connrate', '--connect', `${connect}:${ECHO_PORT}`, '--duration-ms', String(seconds * 1000), '--parallel', '2', '--rst']
  return parseConnRate((await sb.run(clientNs, argv, {allowFailure: true, timeoutMs: (seconds + 30) * 1000})).stdout)
}

/** Pins every thread of a running process (and the threads it creates later) to PIN_CPU. */
export async function pinProcess(pid: number): Promise<void> {
  await runProgram([resolveTool('taskset'), '-a', '-p', '-c', String(PIN_CPU), String(pid)])
}

/** The Unix-socket figures, from build/bin/skfp-uds (socketpair, same 128 KiB writes as iperf3):
 * one stream run, and the rest (round trips, connection rate, pinned round trips and stream). */
export function unixSocket(sb: Sandbox, ns: string, seconds: number, step: <T>(f: () => Promise<T>) => Promise<T>) {
  const uds = (args: string[]) => step(() => sb.run(ns, [programPath('skfp-uds'), ...args], {allowFailure: true, timeoutMs: (seconds + 30) * 1000}))
  const streamOf = (stdout: string): Throughput => {
    try {
      const j = JSON.parse(stdout)
      return {gbps: j.gbps, senderPct: j.senderCpuPct, receiverPct: j.receiverCpuPct, proxyPct: null, errors: j.errors, error: j.error}
    } catch {
      return {gbps: 0, senderPct: 0, receiverPct: 0, proxyPct: null, errors: 1, error: `no result: ${stdout.slice(0, 200)}`}
    }
  }
  const count = String(rttCount(seconds))
  return {
    stream: async () => streamOf((await uds(['stream', '--duration-ms', String(seconds * 1000)])).stdout),
    rest: async () => {
      const rtt = parseRtt((await uds(['rtt', '--count', count, '--size', String(RTT_SIZE)])).stdout)
      const rate = parseConnRate((await uds(['connrate', '--duration-ms', String(seconds * 1000), '--parallel', '2'])).stdout)
      const pinned = parseRtt((await uds(['rtt', '--count', count, '--size', String(RTT_SIZE), '--cpu', String(PIN_CPU)])).stdout)
      const pinnedThroughput = streamOf((await uds(['stream', '--duration-ms', String(seconds * 1000), '--cpu', String(PIN_CPU)])).stdout)
      return {rtt, rate, pinned, pinnedThroughput}
    },
  }
}

export const UDP_ECHO_PORT = 5300

export interface UdpFigures {
  stream: {sent: number; received: number; lost: number; lossPct: number; corrupt: number; datagramsPerSec: number; mbps: number; errors: number; error?: string}
  rtt: {p50Us: number | null; p99Us: number | null; lost: number; errors: number; error?: string}
}

/** build/bin/skfp-udp: an echo server in serverNs (outside the cgroup: the world), a windowed stream
 * and a one-at-a-time round trip from clientNs. */
export async function udpFigures(sb: Sandbox, clientNs: string, serverNs: string, connect: string, seconds: number): Promise<UdpFigures> {
  const bin = programPath('skfp-udp')
  const echo = sb.start(serverNs, [bin, 'echo', '--listen', `${connect}:${UDP_ECHO_PORT}`], {outsideCgroup: true})
  await waitForOutput(echo, /listening/)
  try {
    const at = `${connect}:${UDP_ECHO_PORT}`
    const parse = <T>(stdout: string, failed: T): T => {
      try {
        return JSON.parse(stdout.trim().split('\n').pop()!)
      } catch {
        return failed
      }
    }
    const streamOut = (await sb.run(clientNs, [bin, 'stream', '--connect', at, '--duration-ms', String(seconds * 1000)], {allowFailure: true, timeoutMs: (seconds + 30) * 1000})).stdout
    const stream = parse(streamOut, {sent: 0, received: 0, lost: 0, lossPct: 0, corrupt: 0, datagramsPerSec: 0, mbps: 0, errors: 1, error: `no result: ${streamOut.slice(0, 200)}`})
    const rttOut = (await sb.run(clientNs, [bin, 'rtt', '--connect', at, '--count', String(rttCount(seconds))], {allowFailure: true, timeoutMs: 120_000})).stdout
    const r = parse<{p50Us?: number; p99Us?: number; lost: number; errors: number; error?: string}>(rttOut, {lost: 0, errors: 1, error: `no result: ${rttOut.slice(0, 200)}`})
    return {stream, rtt: {p50Us: r.p50Us ?? null, p99Us: r.p99Us ?? null, lost: r.lost, errors: r.errors, error: r.error}}
  } finally {
    echo.kill('SIGTERM')
    await echo.catch(() => {})
  }
}
