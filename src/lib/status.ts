/** `skfp status`: the observed pins → the documented --json shape. */
import {existsSync} from 'node:fs'
import {CFG_ADAPTIVE, CFG_FASTPATH, type Counters} from './config.js'
import {REUSEPORT_NOTE} from './datapath.js'
import {hookKey} from './changes.js'
import {defaultRouteDevs, vpnMarks} from './intercept.js'
import {netnsPath, type Runner} from './exec.js'
import {interruptibleSleep, interrupted} from './interrupt.js'
import {halfUpProblems, instanceState, listInstances, observeInstance, type InstanceState, type ObservedInstance} from './observe.js'
import {validateInstance} from './pins.js'
import {renderStatus} from './render.js'
import type {UpSettings} from './settings.js'
import type {ReaderStates} from './tools/bpftool.js'

/** The `skfp status --json` contract (one entry per instance). */
export interface InstanceStatus {
  instance: string
  state: InstanceState
  /** What is missing or left over when the state is half-up. */
  problems: string[]
  /** The pid of another skfp whose up or down is at work on the instance now (holder.ts): then the
   * problems are its work in progress. */
  changingBy: number | null
  /** The pid of a live `up --follow` of this instance. */
  followedBy: number | null
  /** What works otherwise than asked while up (the proxy's socket refused by the kernel). */
  warnings: string[]
  settings: UpSettings | null
  /** variant: which fastpath object this instance loaded (null: the kernel takes none). */
  fastpath: {
    enabled: boolean
    sockets: number | null
    variant: string | null
    /** Readers are watched: a socket gets redirected bytes once it has read with recv() (--fastpath auto, on). */
    adaptive: boolean
    /** Adaptive only. From the counters (since up): readers promoted, and why the others stay on TCP;
     * `now`: the sockets of the sockhash alive now, by their reader's state. */
    readers: {
      promoted: number
      keptOnTcp: {splice: number; waitall: number; blocking: number; notJoined: number}
      released: number
      barredAfterPromotion: number
      stranded: number
      now: ReaderStates | null
    } | null
  }
  programs: {
    sockops: {id: number; attached: boolean; cgroup: string | null} | null
    skMsg: {id: number} | null
    /** The FIN hold (cgroup ingress); null: not loaded (an older skfp's instance). */
    finHold: {id: number; attached: boolean} | null
  }
  /** null when interception is off. */
  intercept: {
    /** l3: the uplink has no link-layer header (tun, WireGuard): the programs' *_l3 variants sit there. */
    uplinks: {dev: string; attached: boolean; l3: boolean}[]
    /** --lan interfaces: their ingress filters. */
    lan: {dev: string; attached: boolean}[]
    loAttached: boolean
    rules: {v4: boolean | null; v6: boolean | null}
    routes: {v4: boolean | null; v6: boolean | null}
    proxy: {port: number; addr4: string | null; addr6: string | null; listening: {v4: boolean | null; v6: boolean | null}}
    /** UDP interception, and the proxy's UDP sockets (null when UDP is off or the family is not proxied). */
    udp: {enabled: boolean; listening: {v4: boolean | null; v6: boolean | null}}
    proxyDown: string
    /** The interfaces the netns's traffic to the internet leaves by now (defaultRouteDevs: the default
     * routes, and where an internet address is routed; null: not read). One that is no uplink is a
     * warning: what leaves by it is not intercepted. */
    defaultRoutes: string[] | null
    /** The marks of a VPN's own packets, which go direct (read from the policy rules at up). */
    vpnMarks: string[]
  } | null
  counters: Counters | null
  pinDir: string
}

/** What the instance netns's routing is now, where it was read: the devices its traffic to the
 * internet leaves by (defaultRouteDevs), the marks of its VPNs' own packets (vpnMarks). */
export interface RoutingNow {
  defaultRoutes: string[]
  vpnMarks: string[]
}

export function statusOf(o: ObservedInstance, now?: RoutingNow): InstanceStatus {
  const state = instanceState(o)
  const problems = halfUpProblems(o)
  const warnings: string[] = []
  if (o.counters?.assignRefused) warnings.push(`the kernel refused the proxy's socket ${o.counters.assignRefused} times: ${REUSEPORT_NOTE}`)
  const uplinks = o.record?.settings.intercept?.uplinks
  const unhooked = uplinks ? (now?.defaultRoutes ?? []).filter((d) => !uplinks.includes(d)) : []
  if (unhooked.length > 0) warnings.push(`the default route leaves by ${unhooked.join(', ')}, which is not intercepted (uplinks: ${uplinks!.join(', ')}): run \`skfp up\` again with the same flags (with no --uplink it takes the default routes' interfaces), or --replace with --uplink`)
  const marks = o.record?.settings.intercept?.vpnMarks
  const unmarked = marks ? (now?.vpnMarks ?? []).filter((m) => !marks.includes(m)) : []
  if (unmarked.length > 0) warnings.push(`a VPN's policy rules mark its own packets ${unmarked.join(', ')}, which skfp hands to the proxy: run \`skfp up\` again with the same flags (it reads the marks), or up --follow`)
  return {
    instance: o.instance,
    state,
    problems,
    changingBy: o.holder ?? null,
    followedBy: o.follower ?? null,
    warnings,
    settings: o.record?.settings ?? null,
    fastpath: {
      enabled: !!(o.config && o.config.flags & CFG_FASTPATH),
      sockets: o.sockets ?? null,
      variant: o.record ? (o.record.fastpathVariant === undefined ? 'kfunc' : o.record.fastpathVariant) : null,
      adaptive: !!(o.config && o.config.flags & CFG_ADAPTIVE),
      readers: readersOf(o),
    },
    programs: {
      sockops: o.progs.sockops ? {id: o.progs.sockops.id, attached: o.sockopsAttached, cgroup: o.record?.settings.cgroup ?? null} : null,
      skMsg: o.progs.skMsg ? {id: o.progs.skMsg.id} : null,
      finHold: o.progs.finHold ? {id: o.progs.finHold.id, attached: o.finHoldAttached} : null,
    },
    intercept: interceptStatus(o, now?.defaultRoutes),
    counters: o.counters ?? null,
    pinDir: o.pins.dir,
  }
}

function readersOf(o: ObservedInstance): InstanceStatus['fastpath']['readers'] {
  const c = o.counters
  if (!c || !o.config || !(o.config.flags & CFG_ADAPTIVE)) return null
  return {
    promoted: c.readersPromoted,
    keptOnTcp: {splice: c.readersSplice, waitall: c.readersWaitall, blocking: c.readersBlocking, notJoined: c.socketsBlocking},
    released: c.socketsReleased,
    barredAfterPromotion: c.readersBarred,
    stranded: c.readersStranded,
    now: o.readers ?? null,
  }
}

function interceptStatus(o: ObservedInstance, defaultRoutes?: string[]): InstanceStatus['intercept'] {
  const i = o.record?.settings.intercept
  const seen = o.intercept
  if (!i || !seen) return null
  const fam = (f: 4 | 6, v: Record<4 | 6, boolean>) => ((f === 4 ? i.proxyAddr4 : i.proxyAddr6) ? v[f] : null)
  return {
    uplinks: i.uplinks.map((dev) => ({
      dev,
      attached: !!seen.filters[hookKey(dev, 'egress')] && (!i.udp || !!seen.filters[hookKey(dev, 'ingress')]),
      l3: !!o.record?.changes.some((c) => c.kind === 'tc-filter' && c.dev === dev && c.l3),
    })),
    lan: i.lan.map((dev) => ({dev, attached: !!seen.filters[hookKey(dev, 'ingress')]})),
    loAttached: !!seen.filters[hookKey('lo', 'ingress')],
    rules: {v4: fam(4, seen.rules), v6: fam(6, seen.rules)},
    routes: {v4: fam(4, seen.routes), v6: fam(6, seen.routes)},
    proxy: {port: i.proxyPort, addr4: i.proxyAddr4, addr6: i.proxyAddr6, listening: {v4: fam(4, seen.listening), v6: fam(6, seen.listening)}},
    udp: {enabled: i.udp, listening: i.udp ? {v4: fam(4, seen.udpListening), v6: fam(6, seen.udpListening)} : {v4: null, v6: null}},
    proxyDown: i.proxyDown,
    defaultRoutes: defaultRoutes ?? null,
    vpnMarks: i.vpnMarks,
  }
}

/** The status of one instance, or of every instance. */
export async function instanceStatuses(runner: Runner, which: {instance: string; all: boolean}): Promise<InstanceStatus[]> {
  const names = which.all ? listInstances() : [validateInstance(which.instance)]
  return Promise.all(
    names.map(async (n) => {
      const o = await observeInstance(runner, n)
      const s = o.record?.settings
      // where an interception instance's netns is (gone with it: nothing to warn of)
      const i = s?.intercept
      const [defaultRoutes, marks] = i && (!s.netns || existsSync(netnsPath(s.netns))) ? await Promise.all([defaultRouteDevs(runner, s.netns), vpnMarks(runner, i.fwmark, s.netns)]) : []
      const now = defaultRoutes && marks ? {defaultRoutes, vpnMarks: marks} : undefined
      return statusOf(o, now)
    }),
  )
}

/** Counter increase per second between two readings of the same instance. */
export function counterRates(before: Counters | null, after: Counters | null, seconds: number): Partial<Counters> {
  if (!before || !after || seconds <= 0) return {}
  const rates: Partial<Counters> = {}
  for (const k of Object.keys(after) as (keyof Counters)[]) rates[k] = Math.max(0, (after[k] - before[k]) / seconds)
  return rates
}

/** `status --watch`: a screen every interval (with rates from the one before) until Ctrl-C or count. */
export async function watchStatus(runner: Runner, opts: {instance: string; all: boolean; interval: number; count?: number}, show: (screen: string) => void): Promise<void> {
  let previous = new Map<string, {counters: Counters | null; at: number}>()
  for (let n = 0; !interrupted() && (opts.count === undefined || n < opts.count); n++) {
    if (n > 0) await interruptibleSleep(opts.interval * 1000)
    if (interrupted()) break
    const at = Date.now()
    const list = await instanceStatuses(runner, opts)
    const screens = list.map((s) => {
      const before = previous.get(s.instance)
      return renderStatus(s, before ? counterRates(before.counters, s.counters, (at - before.at) / 1000) : undefined)
    })
    previous = new Map(list.map((s) => [s.instance, {counters: s.counters, at}]))
    show(`${new Date(at).toISOString()}  every ${opts.interval} s, Ctrl-C to stop\n\n${screens.join('\n\n') || 'no instance is up'}`)
  }
}
