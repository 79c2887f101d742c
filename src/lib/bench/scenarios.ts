/**
 * The scenarios, by their fixed names: each sets up what it needs inside the sandbox, measures, and
 * takes down what it set up (the instance, the proxy) before the next one runs.
 */
import type {Sandbox} from '../sandbox.js'
import {isInstalled} from '../exec.js'
import {down, redirectedBytes, upFastpath, upInterception, upUnguarded, type InstanceContext} from './instance.js'
import {pinProcess, repeated, startEchoServers, tcpConnRate, tcpRoundTrips, throughput, udpFigures, unixSocket, type UdpFigures} from './measure.js'
import {iptablesTproxy, LAN_IFACE, lanClient, proxyTopology, REMOTE_ADDR, startRelay, startV2ray, type Proxy, type ProxyTopology} from './topology.js'
import type {ScenarioName, ScenarioResult, UdpScenarioName, UdpScenarioResult} from './types.js'


export interface BenchContext extends InstanceContext {
  sb: Sandbox
  seconds: number
  /** Unpinned throughput runs per scenario; the median counts. */
  runs: number
  /** A private directory for generated files (the v2ray configuration). */
  workDir: string
  /** Aborted on Ctrl-C: a scenario stops at its next step (the running one is killed with the cgroup). */
  signal: AbortSignal
  /** Namespaces made on first use and shared by the scenarios that need the same set-up. */
  topology: {loopback?: string; iptables?: ProxyTopology}
}

/** A scenario's own figures; ratios are computed once every scenario has run. */
export type Measured = Omit<ScenarioResult, 'ratios'>

export interface ScenarioDef {
  name: ScenarioName
  /** Why it cannot run on this host or this version of skfp; undefined when it can. */
  unavailable?: () => Promise<string | undefined>
  run(ctx: BenchContext): Promise<Measured>
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

async function measureTcp(ctx: BenchContext, name: ScenarioName, path: TcpPath): Promise<Measured> {
  const {sb, seconds} = ctx
  const step = stepper(ctx)
  const stopEcho = await step(() => startEchoServers(sb, path.serverNs, path.connect, path.serversOutsideCgroup))
  let proxyErrors = 0
  try {
    const t = await repeated(ctx.runs, () => step(() => throughput(sb, {...path, proxyPid: path.proxy?.pid}, seconds)))
    const rtt = await step(() => tcpRoundTrips(sb, path.clientNs, path.connect, seconds, false))
    const rate = await step(() => tcpConnRate(sb, path.clientNs, path.connect, seconds))
    if (path.proxy) await step(() => pinProcess(path.proxy!.pid))
    const pinned = await step(() => tcpRoundTrips(sb, path.clientNs, path.connect, seconds, true))
    const tp = await step(() => throughput(sb, {...path, proxyPid: path.proxy?.pid}, seconds, true))
    if (path.proxy) proxyErrors = await path.proxy.stop()
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
    }
  } finally {
    await stopEcho()
  }
}

async function loopbackNs(ctx: BenchContext): Promise<string> {
  return (ctx.topology.loopback ??= await ctx.sb.addNetns('lo'))
}

/** A loopback run with the instance brought up by up() and taken down afterwards. */
async function loopbackWith(ctx: BenchContext, name: ScenarioName, up: (ns: string) => Promise<void>): Promise<Measured> {
  const ns = await loopbackNs(ctx)
  await up(ns)
  try {
    const m = await measureTcp(ctx, name, {clientNs: ns, serverNs: ns, connect: '127.0.0.1'})
    return {...m, redirectedBytes: await redirectedBytes(ctx)}
  } finally {
    await down(ctx)
  }
}

/**
 * A proxy run through skfp's interception (tc + bpf_sk_assign), with skfp-relay or v2ray. The remote
 * servers are inside the cgroup (a local container: the fastpath pairs the proxy's upstream with them
 * too) unless world is set.
 */
async function intercepted(ctx: BenchContext, name: ScenarioName, fastpath: boolean, start: (ns: string) => Promise<Proxy>, world = false): Promise<Measured> {
  // fresh namespaces each time: the previous scenario's TIME_WAIT sockets would crowd the ports
  const topo = await proxyTopology(ctx.sb, name.replace(/^proxy-/, ''))
  await upInterception(ctx, topo.host, fastpath ? 'all' : 'off')
  try {
    const proxy = await start(topo.host)
    try {
      const m = await measureTcp(ctx, name, {clientNs: topo.host, serverNs: topo.remote, connect: REMOTE_ADDR, proxy, serversOutsideCgroup: world})
      return {...m, redirectedBytes: await redirectedBytes(ctx)}
    } finally {
      await proxy.stop()
    }
  } finally {
    await down(ctx)
    for (const ns of [topo.host, topo.remote]) await ctx.sb.removeNetns(ns)
  }
}

const noV2ray = async () => (isInstalled('v2ray') ? undefined : 'v2ray not installed (apt-get install v2ray)')
const noIptables = async () => (isInstalled('iptables') ? undefined : 'iptables not installed (apt-get install iptables)')

/** Fresh namespaces for one scenario (TIME_WAIT sockets and conntrack entries of another stay out),
 * with a LAN client when lan; removed afterwards. */
async function freshTopology<T>(ctx: BenchContext, tag: string, lan: boolean, body: (topo: ProxyTopology) => Promise<T>): Promise<T> {
  let topo = await proxyTopology(ctx.sb, tag)
  try {
    if (lan) topo = await lanClient(ctx.sb, topo, tag)
    return await body(topo)
  } finally {
    for (const ns of [topo.host, topo.remote, topo.lan]) if (ns) await ctx.sb.removeNetns(ns)
  }
}

/** A LAN client's TCP through skfp-relay: taken by iptables TPROXY or by skfp's --lan. */
async function lanTcp(ctx: BenchContext, name: ScenarioName, skfp: boolean): Promise<Measured> {
  return freshTopology(ctx, name, true, async (topo) => {
    if (skfp) await upInterception(ctx, topo.host, 'off', {lan: [LAN_IFACE]})
    else await iptablesTproxy(ctx.sb, topo.host, REMOTE_ADDR, {lan: LAN_IFACE})
    try {
      const relay = await startRelay(ctx.sb, topo.host)
      try {
        return await measureTcp(ctx, name, {clientNs: topo.lan!, serverNs: topo.remote, connect: REMOTE_ADDR, proxy: relay})
      } finally {
        await relay.stop()
      }
    } finally {
      if (skfp) await down(ctx)
    }
  })
}

export const SCENARIO_DEFS: ScenarioDef[] = [
  {
    name: 'loopback',
    run: async (ctx) => {
      const ns = await loopbackNs(ctx)
      return measureTcp(ctx, 'loopback', {clientNs: ns, serverNs: ns, connect: '127.0.0.1'})
    },
  },
  {name: 'loopback-fastpath', run: (ctx) => loopbackWith(ctx, 'loopback-fastpath', (ns) => upFastpath(ctx, ns))},
  {
    name: 'loopback-fastpath-unguarded',
    run: (ctx) => loopbackWith(ctx, 'loopback-fastpath-unguarded', (ns) => upUnguarded(ctx, ns)),
  },
  {
    name: 'uds',
    run: async (ctx) => {
      const u = await unixSocket(ctx.sb, await loopbackNs(ctx), ctx.seconds, ctx.runs, stepper(ctx))
      return {
        name: 'uds',
        throughputGbps: u.stream.gbps,
        throughputRunsGbps: u.stream.runsGbps,
        throughputPinnedGbps: u.pinnedStream.gbps,
        cpu: {senderPct: u.stream.senderPct, receiverPct: u.stream.receiverPct, proxyPct: null},
        rttP50Us: u.rtt.p50Us,
        rttP99Us: u.rtt.p99Us,
        rttP999Us: u.rtt.p999Us,
        rttP50PinnedUs: u.pinned.p50Us,
        rttP99PinnedUs: u.pinned.p99Us,
        connPerSec: u.rate.perSec,
        errors: u.stream.errors + u.rtt.errors + u.rate.errors + u.pinned.errors + u.pinnedStream.errors,
        ...details({stream: u.stream, rtt: u.rtt, connrate: u.rate, pinnedRtt: u.pinned, pinnedStream: u.pinnedStream}),
      }
    },
  },
  {
    name: 'proxy-iptables',
    unavailable: noIptables,
    run: async (ctx) => {
      const topo = (ctx.topology.iptables ??= await proxyTopology(ctx.sb, 'ipt'))
      await iptablesTproxy(ctx.sb, topo.host, REMOTE_ADDR)
      const relay = await startRelay(ctx.sb, topo.host)
      try {
        return await measureTcp(ctx, 'proxy-iptables', {clientNs: topo.host, serverNs: topo.remote, connect: REMOTE_ADDR, proxy: relay})
      } finally {
        await relay.stop()
      }
    },
  },
  {name: 'proxy-tc', run: (ctx) => intercepted(ctx, 'proxy-tc', false, (ns) => startRelay(ctx.sb, ns))},
  {name: 'proxy-tc-fastpath', run: (ctx) => intercepted(ctx, 'proxy-tc-fastpath', true, (ns) => startRelay(ctx.sb, ns))},
  {
    name: 'proxy-tc-fastpath-world',
    run: (ctx) => intercepted(ctx, 'proxy-tc-fastpath-world', true, (ns) => startRelay(ctx.sb, ns), true),
  },
  {name: 'proxy-v2ray-tc', unavailable: noV2ray, run: (ctx) => intercepted(ctx, 'proxy-v2ray-tc', false, (ns) => startV2ray(ctx.sb, ns, ctx.workDir))},
  {
    name: 'proxy-v2ray-tc-fastpath',
    unavailable: noV2ray,
    run: (ctx) => intercepted(ctx, 'proxy-v2ray-tc-fastpath', true, (ns) => startV2ray(ctx.sb, ns, ctx.workDir)),
  },
  {name: 'lan-iptables', unavailable: noIptables, run: (ctx) => lanTcp(ctx, 'lan-iptables', false)},
  {name: 'lan-tc', run: (ctx) => lanTcp(ctx, 'lan-tc', true)},
]

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
  return freshTopology(ctx, name, lan, async (topo) => {
    if (skfp) await upInterception(ctx, topo.host, 'off', {udp: true, lan: lan ? [LAN_IFACE] : []})
    else await iptablesTproxy(ctx.sb, topo.host, REMOTE_ADDR, {protos: ['udp'], lan: lan ? LAN_IFACE : undefined})
    try {
      const proxy = await startV2ray(ctx.sb, topo.host, ctx.workDir)
      try {
        ctx.signal.throwIfAborted()
        return udpResult(name, await udpFigures(ctx.sb, lan ? topo.lan! : topo.host, topo.remote, REMOTE_ADDR, ctx.seconds))
      } finally {
        await proxy.stop()
      }
    } finally {
      if (skfp) await down(ctx)
    }
  })
}

const noUdpTools = async () => (await noV2ray()) ?? (await noIptables())

export const UDP_SCENARIO_DEFS: UdpScenarioDef[] = [
  {name: 'udp-iptables', unavailable: noUdpTools, run: (ctx) => udpThroughV2ray(ctx, 'udp-iptables', false, false)},
  {name: 'udp-tc', unavailable: noV2ray, run: (ctx) => udpThroughV2ray(ctx, 'udp-tc', true, false)},
  {name: 'udp-lan-iptables', unavailable: noUdpTools, run: (ctx) => udpThroughV2ray(ctx, 'udp-lan-iptables', false, true)},
  {name: 'udp-lan-tc', unavailable: noV2ray, run: (ctx) => udpThroughV2ray(ctx, 'udp-lan-tc', true, true)},
]
