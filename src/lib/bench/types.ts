/**
 * The `skfp bench --json` contract: other tools compare runs across machines and versions with it,
 * so names and fields only ever grow. Times are microseconds, CPU is percent of one CPU.
 */

/** Fixed scenario names, in the order they run. */
export const SCENARIOS = [
  'loopback',
  'loopback-fastpath',
  'loopback-fastpath-unguarded',
  'uds',
  'proxy-iptables',
  'proxy-tc',
  'proxy-tc-fastpath',
  'proxy-tc-fastpath-world',
  'proxy-v2ray-tc',
  'proxy-v2ray-tc-fastpath',
] as const

export type ScenarioName = (typeof SCENARIOS)[number]

export interface Machine {
  kernel: string
  os: string
  arch: string
  cpus: number
  cpuModel: string
  memoryGiB: number
  skfpVersion: string
  node: string
  date: string
}

export interface Cpu {
  /** The iperf3 client, the uds writer thread. */
  senderPct: number
  /** The iperf3 server, the uds reader thread. */
  receiverPct: number
  /** The relay or v2ray; null without a proxy. */
  proxyPct: number | null
}

export interface ScenarioResult {
  name: ScenarioName
  /** The median of the unpinned runs (the lower middle one for an even count). */
  throughputGbps: number
  /** Every unpinned run, in the order they ran: how much the scheduler's placement moved them. */
  throughputRunsGbps: number[]
  /** With both ends (and the proxy) pinned to one CPU: the scheduler's placement taken out. */
  throughputPinnedGbps: number
  cpu: Cpu
  rttP50Us: number
  rttP99Us: number
  rttP999Us: number
  /** Round trip with both ends (and the proxy) pinned to one CPU. */
  rttP50PinnedUs: number
  rttP99PinnedUs: number
  connPerSec: number
  /** Failed transfers, round trips, connections, upstream connects of the proxy: must be 0. */
  errors: number
  /** The first error of each failed measurement (only when errors > 0). */
  errorDetails?: string[]
  /** Bytes sk_msg redirected (scenarios with an instance up): shows the fastpath carried the traffic. */
  redirectedBytes?: number | null
  /** Throughput / loopback's and / proxy-iptables's in this run (null when that one did not run). */
  ratios: {loopback: number | null; proxyIptables: number | null}
}

export interface SkippedScenario {
  name: ScenarioName
  skipped: string
}

/** A scenario that could not finish (a set-up step failed); the others still run. */
export interface FailedScenario {
  name: ScenarioName
  failed: string
}

export type ScenarioOutcome = ScenarioResult | SkippedScenario | FailedScenario

export interface Target {
  what: string
  value: number | null
  goal: string
  met: boolean | null
}

export interface BenchResult {
  machine: Machine
  durationS: number
  /** Unpinned throughput runs per scenario. */
  runs: number
  scenarios: ScenarioOutcome[]
  targets: Target[]
  clean: boolean
}

export const isMeasured = <T extends {name: ScenarioName}>(s: T | SkippedScenario | FailedScenario): s is T => !('skipped' in s) && !('failed' in s)
