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
  'lan-iptables',
  'lan-tc',
] as const

export type ScenarioName = (typeof SCENARIOS)[number]

/** UDP scenarios, in the order they run (after the TCP ones): through v2ray, the host's own
 * client or a LAN client's, intercepted by iptables TPROXY or by skfp. */
export const UDP_SCENARIOS = ['udp-iptables', 'udp-tc', 'udp-lan-iptables', 'udp-lan-tc'] as const

export type UdpScenarioName = (typeof UDP_SCENARIOS)[number]

/** Real applications with their own clients (after the UDP ones), each plain, with skfp's defaults and
 * with --fastpath on, side by side (src/lib/bench/apps.ts). */
export const APP_SCENARIOS = ['redis-get', 'redis-get-pipelined', 'nginx-small-c1', 'nginx-small-c8', 'nginx-large-c1', 'nginx-large-c8', 'gorelay-nginx-small-c1', 'gorelay-nginx-large-c1'] as const

export type AppScenarioName = (typeof APP_SCENARIOS)[number]

export type AppMode = 'plain' | 'defaults' | 'fastpathOn'

export interface AppScenarioResult {
  name: AppScenarioName
  /** Requests per second (redis-benchmark's GET rate, wrk's Requests/sec), the median of the rounds
   * (--runs; each round measures plain, defaults and on in turn): no skfp. */
  plain: number
  /** With `skfp up` and no --fastpath flag (auto: the kernel self-test decides). */
  defaults: number
  /** Whether the defaults turned the fastpath on. */
  defaultsFastpath: boolean
  /** With --fastpath on. */
  fastpathOn: number
  /** defaults / plain, fastpathOn / plain. */
  ratioDefaults: number | null
  ratioOn: number | null
  /** The clients' socket errors and non-2xx responses: must be 0. */
  errors: number
}

export type AppScenarioOutcome = AppScenarioResult | {name: AppScenarioName; skipped: string} | {name: AppScenarioName; failed: string}

export interface UdpScenarioResult {
  name: UdpScenarioName
  /** Datagrams answered intact per second, a window of 64 in flight (build/bin/skfp-udp stream):
   * the median round's (--runs rounds; its other figures are that round's too). */
  datagramsPerSec: number
  /** Every round's datagrams/s, in the order they ran. */
  datagramsPerSecRuns?: number[]
  /** Their payload (1200 bytes each), one way. */
  throughputMbps: number
  sent: number
  /** Sent and never answered: counted and reported, not hidden. */
  lost: number
  lossPct: number
  /** Answers that were not the datagram sent (must be 0). */
  corrupt: number
  /** One datagram at a time (skfp-udp rtt); null when none came back. */
  rttP50Us: number | null
  rttP99Us: number | null
  rttLost: number
  /** Failed sends/receives and corrupt answers, over every round: must be 0. */
  errors: number
  errorDetails?: string[]
  /** datagramsPerSec / udp-iptables's (or udp-lan-iptables's) in this run. */
  ratioIptables: number | null
}

export type UdpScenarioOutcome = UdpScenarioResult | SkippedScenario | FailedScenario

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
  name: ScenarioName | UdpScenarioName
  skipped: string
}

/** A scenario that could not finish (a set-up step failed); the others still run. */
export interface FailedScenario {
  name: ScenarioName | UdpScenarioName
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
  /** The UDP scenarios (their own figures: datagrams, loss). */
  udp: UdpScenarioOutcome[]
  /** The real applications (requests per second, three ways). */
  apps: AppScenarioOutcome[]
  targets: Target[]
  clean: boolean
}

export const isMeasured = <T extends {name: ScenarioName | UdpScenarioName}>(s: T | SkippedScenario | FailedScenario): s is T => !('skipped' in s) && !('failed' in s)
