/**
 * The scenarios, by their fixed names. The TCP ones run in rounds (--runs): each round sets every
 * chosen scenario up in turn, measures one throughput run and takes it down again, so the scenarios
 * a target compares (loopback-fastpath against loopback and uds, proxy-tc against proxy-iptables)
 * are measured minutes apart at most, not a whole bench apart on a shared VM. The last round also
 * measures the round trips, the connection rate and the pinned figures. The UDP scenarios run after
 * them, in rounds too.
 */
import type {Sandbox} from '../sandbox.js'
import {isInstalled} from '../exec.js'
import {throwIfInterrupted} from '../interrupt.js'
import {down, redirectedBytes, upFastpath, upInterception, upUnguarded, type InstanceContext} from './instance.js'
import {lowerMedianBy, medianRun, pinProcess, startEchoServers, tcpConnRate, tcpRoundTrips, throughput, udpFigures, unixSocket, type ConnRate, type RoundTrips, type Throughput, type UdpFigures} from './measure.js'
import {iptablesTproxy, LAN_IFACE, lanClient, proxyTopology, REMOTE_ADDR, startRelay, startV2ray, type Proxy, type ProxyTopology} from './topology.js'
import type {FailedScenario, ScenarioName, ScenarioResult, SkippedScenario, UdpScenarioName, UdpScenarioResult} from './types.js'


export interface BenchContext extends InstanceContext {
  sb: Sandbox
  seconds: number
  /** Rounds: unpinned throughput runs per scenario; the median counts. */
  runs: number
  /** A private directory for generated files (the v2ray configuration). */
  workDir: string
  /** Aborted on Ctrl-C: a scenario stops at its next step (the running one is killed with the cgroup). */
  signal: AbortSignal
  /** The loopback namespace, made on first use and shared by the loopback scenarios and uds. */
  topology: {loopback?: string}
}

/** A scenario's own figures; ratios are computed once every scenario has run. */
export type Measured = Omit<ScenarioResult, 'ratios'>

/** What the last round measures once, besides its throughput run. */
interface Rest {
  rtt: RoundTrips
  rate: ConnRate
  pinned: RoundTrips
  pinnedThroughput: Throughput
}

/** A TCP scenario set up: its measurements, then close() takes down what open() set up. */
interface Session {
  /** One unpinned throughput run. */
  throughput(): Promise<Throughput>
  rest(): Promise<Rest>
  /** The proxy's failed upstream connects, and the bytes redirected (scenarios with an instance up). */
  close(): Promise<{proxyErrors: number; redirectedBytes?: number | null}>
}

export interface ScenarioDef {
  name: ScenarioName
  /** Why it cannot run on this host or this version of skfp; undefined when it can. */
  unavailable?: () => Promise<string | undefined>
  open(ctx: BenchContext): Promise<Session>
}

interface TcpPath {
  clientNs: string
  serverNs: string
  /** The address the client dials and the servers listen on. */
  connect: string
  proxy?: Proxy
  /** The servers run outside the cgroup: the world rather than a local container. */
  serversOutsideCgroup?: boolean
}

/** errorDetails: "measurement: first error", present only when something failed. */
function details(parts: Record<string, {error?: string}>): {errorDetails?: string[]} {
  const found = Object.entries(parts).flatMap(([what, p]) => (p.error ? [`${what}: ${p.error}`] : []))
  return found.length ? {errorDetails: found} : {}
}

/** Runs one measurement unless the run was interrupted. */
const stepper =
  (ctx: BenchContext) =>
  <T>(f: () => Promise<T>): Promise<T> => {
    ctx.signal.throwIfAborted()
    return f()
  }

/** Undo steps, run in reverse order; every one runs even when another fails (the first failure is rethrown). */
class Undo {
  private steps: (() => Promise<unknown>)[] = []
  add(step: () => Promise<unknown>): void {
    this.steps.push(step)
  }
  async run(): Promise<void> {
    let failure: unknown
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step()
      } catch (error) {
        failure ??= error
      }
    }
    if (failure) throw failure
  }
}

/**
 * Sets a scenario up with set (which registers the undo of each step it took) and returns its session;
 * when set fails, what it had set up is taken down before the error goes on.
 * counted: an instance is up, whose redirected bytes close() reads before the undo takes it down.
 */
async function session(ctx: BenchContext, set: (undo: Undo) => Promise<TcpPath>, counted = false): Promise<Session> {
  const undo = new Undo()
  let path: TcpPath
  try {
    path = await set(undo)
  } catch (error) {
    await undo.run().catch(() => {})
    throw error
  }
  const {sb, seconds} = ctx
  const step = stepper(ctx)
  const at = {...path, proxyPid: path.proxy?.pid}
  return {
    throughput: () => step(() => throughput(sb, at, seconds)),
    rest: async () => {
      const stopEcho = await step(() => startEchoServers(sb, path.serverNs, path.connect, path.serversOutsideCgroup))
      try {
        const rtt = await step(() => tcpRoundTrips(sb, path.clientNs, path.connect, seconds, false))
        const rate = await step(() => tcpConnRate(sb, path.clientNs, path.connect, seconds))
        if (path.proxy) await step(() => pinProcess(path.proxy!.pid))
        const pinned = await step(() => tcpRoundTrips(sb, path.clientNs, path.connect, seconds, true))
        const pinnedThroughput = await step(() => throughput(sb, at, seconds, true))
        return {rtt, rate, pinned, pinnedThroughput}
      } finally {
        await stopEcho()
      }
    },
    close: async () => {
      try {
        const redirected = counted ? await redirectedBytes(ctx) : undefined
        const proxyErrors = path.proxy ? await path.proxy.stop() : 0
        return {proxyErrors, ...(counted ? {redirectedBytes: redirected} : {})}
      } finally {
        await undo.run()
      }
    },
  }
}

async function loopbackNs(ctx: BenchContext): Promise<string> {
  return (ctx.topology.loopback ??= await ctx.sb.addNetns('lo'))
}

/** A loopback scenario with the instance brought up by up() (none when up is not given). */
const loopback = (up?: (ctx: BenchContext, ns: string) => Promise<void>) => (ctx: BenchContext) =>
  session(
    ctx,
    async (undo) => {
      const ns = await loopbackNs(ctx)
      if (up) {
        await up(ctx, ns)
        undo.add(() => down(ctx))
      }
      return {clientNs: ns, serverNs: ns, connect: '127.0.0.1'}
    },
    !!up,
  )

/** Fresh namespaces (TIME_WAIT sockets and conntrack entries of another scenario or round stay out),
 * with a LAN client when lan; removed by the undo. */
async function freshTopology(ctx: BenchContext, undo: Undo, tag: string, lan: boolean): Promise<ProxyTopology> {
  let topo = await proxyTopology(ctx.sb, tag)
  undo.add(async () => {
    for (const ns of [topo.host, topo.remote, topo.lan]) if (ns) await ctx.sb.removeNetns(ns)
  })
  if (lan) topo = await lanClient(ctx.sb, topo, tag)
  return topo
}

/** A proxy started in ns, stopped by the undo. */
async function started(undo: Undo, start: () => Promise<Proxy>): Promise<Proxy> {
  const proxy = await start()
  undo.add(() => proxy.stop())
  return proxy
}

/**
 * A proxy run through skfp's interception (tc + bpf_sk_assign), with skfp-relay or v2ray. The remote
 * servers are inside the cgroup (a local container: the fastpath pairs the proxy's upstream with them
 * too) unless world is set.
 */
const intercepted = (name: ScenarioName, fastpath: boolean, start: (ctx: BenchContext, ns: string) => Promise<Proxy>, world = false) => (ctx: BenchContext) =>
  session(
    ctx,
    async (undo) => {
      const topo = await freshTopology(ctx, undo, name.replace(/^proxy-/, ''), false)
      await upInterception(ctx, topo.host, fastpath ? 'all' : 'off')
      undo.add(() => down(ctx))
      const proxy = await started(undo, () => start(ctx, topo.host))
      return {clientNs: topo.host, serverNs: topo.remote, connect: REMOTE_ADDR, proxy, serversOutsideCgroup: world}
    },
    true,
  )

/** The host's own TCP (or a LAN client's) through skfp-relay: taken by iptables TPROXY or by skfp's
 * interception (--lan for the LAN client). */
const relayed = (name: ScenarioName, skfp: boolean, lan: boolean) => (ctx: BenchContext) =>
  session(ctx, async (undo) => {
    const topo = await freshTopology(ctx, undo, name, lan)
    if (skfp) {
      await upInterception(ctx, topo.host, 'off', {lan: lan ? [LAN_IFACE] : []})
      undo.add(() => down(ctx))
    } else {
      // in the namespace: removed with it
      await iptablesTproxy(ctx.sb, topo.host, REMOTE_ADDR, {lan: lan ? LAN_IFACE : undefined})
    }
    const relay = await started(undo, () => startRelay(ctx.sb, topo.host))
    return {clientNs: lan ? topo.lan! : topo.host, serverNs: topo.remote, connect: REMOTE_ADDR, proxy: relay}
  })

/** A Unix stream socket pair (build/bin/skfp-uds) in the loopback namespace. */
async function uds(ctx: BenchContext): Promise<Session> {
  const u = unixSocket(ctx.sb, await loopbackNs(ctx), ctx.seconds, stepper(ctx))
  return {throughput: u.stream, rest: u.rest, close: async () => ({proxyErrors: 0})}
}

const noV2ray = async () => (isInstalled('v2ray') ? undefined : 'v2ray not installed (apt-get install v2ray)')
const noIptables = async () => (isInstalled('iptables') ? undefined : 'iptables not installed (apt-get install iptables)')
const v2ray = (ctx: BenchContext, ns: string) => startV2ray(ctx.sb, ns, ctx.workDir)
const relay = (ctx: BenchContext, ns: string) => startRelay(ctx.sb, ns)

export const SCENARIO_DEFS: ScenarioDef[] = [
  {name: 'loopback', open: loopback()},
  {name: 'loopback-fastpath', open: loopback(upFastpath)},
  {name: 'loopback-fastpath-unguarded', open: loopback(upUnguarded)},
  {name: 'uds', open: uds},
  {name: 'proxy-iptables', unavailable: noIptables, open: relayed('proxy-iptables', false, false)},
  {name: 'proxy-tc', open: intercepted('proxy-tc', false, relay)},
  {name: 'proxy-tc-fastpath', open: intercepted('proxy-tc-fastpath', true, relay)},
  {name: 'proxy-tc-fastpath-world', open: intercepted('proxy-tc-fastpath-world', true, relay, true)},
  {name: 'proxy-v2ray-tc', unavailable: noV2ray, open: intercepted('proxy-v2ray-tc', false, v2ray)},
  {name: 'proxy-v2ray-tc-fastpath', unavailable: noV2ray, open: intercepted('proxy-v2ray-tc-fastpath', true, v2ray)},
  {name: 'lan-iptables', unavailable: noIptables, open: relayed('lan-iptables', false, true)},
  {name: 'lan-tc', open: relayed('lan-tc', true, true)},
]

type TcpOutcome = Measured | SkippedScenario | FailedScenario

/**
 * Each of defs once per round, in turn, for ctx.runs rounds (step does one scenario's round). One that
 * is unavailable is said and left out; one whose step fails is recorded as failed and left out of the
 * later rounds, the others go on. Returns the skipped and failed ones by name.
 */
async function inRounds<N extends ScenarioName | UdpScenarioName, D extends {name: N; unavailable?: () => Promise<string | undefined>}>(
  ctx: BenchContext,
  defs: D[],
  say: (line: string) => void,
  step: (def: D, round: number) => Promise<void>,
): Promise<Map<N, SkippedScenario | FailedScenario>> {
  const out = new Map<N, SkippedScenario | FailedScenario>()
  for (const def of defs) {
    const skipped = await def.unavailable?.()
    if (skipped) {
      say(`${def.name}: skipped (${skipped})`)
      out.set(def.name, {name: def.name, skipped})
    }
  }
  for (let round = 1; round <= ctx.runs; round++) {
    for (const def of defs.filter((d) => !out.has(d.name))) {
      say(`${def.name}, round ${round} of ${ctx.runs}…`)
      try {
        ctx.signal.throwIfAborted()
        await step(def, round)
        ctx.signal.throwIfAborted()
      } catch (error) {
        if (ctx.signal.aborted) throwIfInterrupted()
        say(`  failed: ${(error as Error).message}`)
        out.set(def.name, {name: def.name, failed: (error as Error).message})
      }
    }
  }
  return out
}

/** The chosen TCP scenarios in ctx.runs rounds (see the top of this file). */
export async function runTcpScenarios(ctx: BenchContext, names: readonly string[], say: (line: string) => void): Promise<TcpOutcome[]> {
  const defs = SCENARIO_DEFS.filter((d) => names.includes(d.name))
  const results = new Map<ScenarioName, Measured>()
  const runs = new Map<ScenarioName, Throughput[]>(defs.map((d) => [d.name, []]))
  const proxyErrors = new Map<ScenarioName, number>(defs.map((d) => [d.name, 0]))
  const notMeasured = await inRounds(ctx, defs, say, async ({name, open}, round) => {
    const s = await open(ctx)
    let rest: Rest | undefined
    let closed: Awaited<ReturnType<Session['close']>>
    try {
      const t = await s.throughput()
      runs.get(name)!.push(t)
      say(`  ${t.gbps.toFixed(2)} Gbit/s`)
      if (round === ctx.runs) rest = await s.rest()
    } finally {
      closed = await s.close()
    }
    proxyErrors.set(name, proxyErrors.get(name)! + closed.proxyErrors)
    if (rest) {
      const m = measured(name, medianRun(runs.get(name)!), rest, proxyErrors.get(name)!, closed.redirectedBytes)
      say(`  ${m.throughputGbps.toFixed(2)} Gbit/s (median), rtt p50 ${m.rttP50Us.toFixed(1)} µs (pinned ${m.rttP50PinnedUs.toFixed(2)}), ${m.connPerSec.toFixed(0)} conn/s, ${m.errors} errors`)
      results.set(name, m)
    }
  })
  return defs.map((d) => notMeasured.get(d.name) ?? results.get(d.name)!)
}

function measured(name: ScenarioName, t: ReturnType<typeof medianRun>, rest: Rest, proxyErrors: number, redirected: number | null | undefined): Measured {
  const {rtt, rate, pinned, pinnedThroughput: tp} = rest
  return {
    name,
    throughputGbps: t.gbps,
    throughputRunsGbps: t.runsGbps,
    throughputPinnedGbps: tp.gbps,
    cpu: {senderPct: t.senderPct, receiverPct: t.receiverPct, proxyPct: t.proxyPct},
    rttP50Us: rtt.p50Us,
    rttP99Us: rtt.p99Us,
    rttP999Us: rtt.p999Us,
    rttP50PinnedUs: pinned.p50Us,
    rttP99PinnedUs: pinned.p99Us,
    connPerSec: rate.perSec,
    errors: t.errors + rtt.errors + rate.errors + pinned.errors + tp.errors + proxyErrors,
    ...details({throughput: t, rtt, connrate: rate, pinnedRtt: pinned, pinnedThroughput: tp, proxy: {error: proxyErrors ? `${proxyErrors} upstream connects failed` : undefined}}),
    ...(redirected !== undefined ? {redirectedBytes: redirected} : {}),
  }
}

/** A UDP scenario's own figures; the ratio is computed once every scenario has run. */
export type UdpMeasured = Omit<UdpScenarioResult, 'ratioIptables'>

export interface UdpScenarioDef {
  name: UdpScenarioName
  unavailable?: () => Promise<string | undefined>
  run(ctx: BenchContext): Promise<UdpMeasured>
}

function udpResult(name: UdpScenarioName, f: UdpFigures): UdpMeasured {
  const s = f.stream
  return {
    name,
    datagramsPerSec: s.datagramsPerSec,
    throughputMbps: s.mbps,
    sent: s.sent,
    lost: s.lost,
    lossPct: s.lossPct,
    corrupt: s.corrupt,
    rttP50Us: f.rtt.p50Us,
    rttP99Us: f.rtt.p99Us,
    rttLost: f.rtt.lost,
    errors: s.errors + f.rtt.errors + s.corrupt,
    ...details({stream: s, rtt: f.rtt, corrupt: {error: s.corrupt ? `${s.corrupt} answers were not the datagram sent` : undefined}}),
  }
}

/** UDP through v2ray from the host itself or from a LAN client, taken by iptables TPROXY or by skfp. */
async function udpThroughV2ray(ctx: BenchContext, name: UdpScenarioName, skfp: boolean, lan: boolean): Promise<UdpMeasured> {
  const undo = new Undo()
  try {
    const topo = await freshTopology(ctx, undo, name, lan)
    if (skfp) {
      await upInterception(ctx, topo.host, 'off', {udp: true, lan: lan ? [LAN_IFACE] : []})
      undo.add(() => down(ctx))
    } else {
      await iptablesTproxy(ctx.sb, topo.host, REMOTE_ADDR, {protos: ['udp'], lan: lan ? LAN_IFACE : undefined})
    }
    await started(undo, () => v2ray(ctx, topo.host))
    ctx.signal.throwIfAborted()
    return udpResult(name, await udpFigures(ctx.sb, lan ? topo.lan! : topo.host, topo.remote, REMOTE_ADDR, ctx.seconds))
  } finally {
    await undo.run()
  }
}

const noUdpTools = async () => (await noV2ray()) ?? (await noIptables())

export const UDP_SCENARIO_DEFS: UdpScenarioDef[] = [
  {name: 'udp-iptables', unavailable: noUdpTools, run: (ctx) => udpThroughV2ray(ctx, 'udp-iptables', false, false)},
  {name: 'udp-tc', unavailable: noV2ray, run: (ctx) => udpThroughV2ray(ctx, 'udp-tc', true, false)},
  {name: 'udp-lan-iptables', unavailable: noUdpTools, run: (ctx) => udpThroughV2ray(ctx, 'udp-lan-iptables', false, true)},
  {name: 'udp-lan-tc', unavailable: noV2ray, run: (ctx) => udpThroughV2ray(ctx, 'udp-lan-tc', true, true)},
]

type UdpOutcome = UdpMeasured | SkippedScenario | FailedScenario

/**
 * The chosen UDP scenarios in ctx.runs rounds, like the TCP ones: each round runs every scenario once
 * (set up, stream and round trips, taken down). A scenario's figures are those of its median round by
 * datagrams/s, with the errors of every round.
 */
export async function runUdpScenarios(ctx: BenchContext, names: readonly string[], say: (line: string) => void): Promise<UdpOutcome[]> {
  const defs = UDP_SCENARIO_DEFS.filter((d) => names.includes(d.name))
  const rounds = new Map<UdpScenarioName, UdpMeasured[]>(defs.map((d) => [d.name, []]))
  const notMeasured = await inRounds(ctx, defs, say, async ({name, run}) => {
    const m = await run(ctx)
    say(`  ${m.datagramsPerSec.toFixed(0)} datagrams/s (${m.throughputMbps.toFixed(0)} Mbit/s), ${m.lost} of ${m.sent} lost (${m.lossPct.toFixed(2)} %), rtt p50 ${m.rttP50Us?.toFixed(1) ?? '–'} µs, ${m.errors} errors`)
    rounds.get(name)!.push(m)
  })
  return defs.map((d) => notMeasured.get(d.name) ?? medianUdp(rounds.get(d.name)!))
}

/** The median round by datagrams/s (the lower middle one for an even count), every round's rate,
 * the errors of all rounds (the first error details kept). */
export function medianUdp(rounds: UdpMeasured[]): UdpMeasured {
  const median = lowerMedianBy(rounds, (r) => r.datagramsPerSec)
  const errorDetails = rounds.find((r) => r.errorDetails)?.errorDetails
  return {...median, errors: rounds.reduce((n, r) => n + r.errors, 0), ...(errorDetails ? {errorDetails} : {}), datagramsPerSecRuns: rounds.map((r) => r.datagramsPerSec)}
}
