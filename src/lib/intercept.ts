/**
 * Interception: what `up` must observe in the target netns (and refuse when something is in the
 * way), the changes it records, and the bypass map entries it writes. Pure where possible.
 */
import {existsSync, statSync} from 'node:fs'
import {markOf, markText, observeChange} from './changes.js'
import {CGROUP_BYPASS, CGROUP_INTERCEPT, VPN_MARKS} from './config.js'
import {conflictError, usageError} from './errors.js'
import {onceEach, type Cmd, type Runner} from './exec.js'
import {parseCidr} from './net.js'
import type {InstancePins} from './pins.js'
import type {Change, TcProg} from './record.js'
import {diffSettings, type InterceptSettings, type UpSettings} from './settings.js'
import * as bpftool from './tools/bpftool.js'
import * as ip from './tools/ip.js'
import * as sysctl from './tools/sysctl.js'
import * as tc from './tools/tc.js'

export const RULE_PRIORITY = 1487
export const ACCEPT_LOCAL = 'net.ipv4.conf.lo.accept_local'
/** Every family the proxy listens on gets rules and routes; the other goes direct. */
export const families = (i: InterceptSettings): (4 | 6)[] => [...(i.proxyAddr4 ? [4 as const] : []), ...(i.proxyAddr6 ? [6 as const] : [])]

export interface InterceptFacts {
  loIfindex: number
  /** accept_local before up, restored by down. */
  oldAcceptLocal: string
  /** Devices that have no clsact qdisc yet (skfp creates and later removes it). */
  needsClsact: string[]
  /** The uplinks and --lan interfaces without a link-layer header (linkLayer 'l3'). */
  l3: string[]
}

/** How skfp's tc programs read an interface's packets: 'l2', after an Ethernet header (physical,
 * veth, bridge, macvlan); 'l3', from the IP header on (link type none: tun, WireGuard). undefined:
 * any other link type (PPP, ipip, GRE, …), which skfp does not intercept on. */
export function linkLayer(link: Pick<ip.Link, 'link_type'>): 'l2' | 'l3' | undefined {
  return link.link_type === 'ether' ? 'l2' : link.link_type === 'none' ? 'l3' : undefined
}

/** Addresses no one routes specially (TEST-NET-1, the IPv6 documentation prefix): where the kernel
 * sends them is where the host's traffic to the internet leaves. */
export const PROBE_DST = {4: '192.0.2.1', 6: '2001:db8::1'} as const

/** The devices the host's traffic to the internet leaves the target netns by, both families, sorted:
 * those of the main table's default routes (each next hop of a multipath one), and the one the
 * kernel's routing picks for an internet address, which finds what a VPN routes past the default
 * route (wg-quick's and Tailscale's own table under a policy rule; OpenVPN's 0.0.0.0/1 and
 * 128.0.0.0/1). */
export async function defaultRouteDevs(runner: Runner, netns?: string): Promise<string[]> {
  const devs = new Set<string>()
  const families = [4, 6] as const
  const [tables, picked] = await Promise.all([
    Promise.all(families.map((family) => ip.routes(runner, family, 'main', netns))),
    Promise.all(families.map((family) => ip.routeGet(runner, family, PROBE_DST[family], netns))),
  ])
  for (const r of tables.flat()) if (r.dst === 'default') for (const dev of [r.dev, ...(r.nexthops ?? []).map((h) => h.dev)]) if (dev) devs.add(dev)
  for (const dev of picked) if (dev && dev !== 'lo') devs.add(dev)
  return [...devs].sort()
}

/** The marks of a VPN's own packets in the target netns, both families, sorted, at most VPN_MARKS:
 * those of its `not fwmark` policy rules, which send everything but the VPN's own packets into the
 * tunnel (wg-quick: `not fwmark 51820 table 51820`; Tailscale: `not fwmark 0x80000/0xff0000 table
 * 52`). Those packets leave by the physical uplink, to the VPN's server: handed to the proxy, the
 * tunnel would run through it (or be refused with it). skfp's own fwmark and a mark that would match
 * unmarked packets are left out. */
export async function vpnMarks(runner: Runner, fwmark: number, netns?: string): Promise<string[]> {
  const rules = (await Promise.all(([4, 6] as const).map((family) => ip.rules(runner, family, netns)))).flat()
  const marks = new Set<string>()
  for (const r of rules) {
    if (!('not' in r) || r.fwmark === undefined) continue
    const [mark, mask] = [Number(r.fwmark) >>> 0, r.fwmask === undefined ? 0xffffffff : Number(r.fwmask) >>> 0]
    if ((mark & mask) === 0 || (mark === fwmark && mask === 0xffffffff)) continue
    marks.add(markText((mark & mask) >>> 0, mask))
  }
  return [...marks].sort().slice(0, VPN_MARKS)
}

/** What interception takes from the target netns's routing at each up: the uplinks, unless given
 * (the devices of the default routes, defaultRouteDevs), and the marks of a VPN's own packets. */
export async function resolveRouting(runner: Runner, settings: UpSettings): Promise<UpSettings> {
  const i = settings.intercept
  if (!i) return settings
  const [devs, marks] = await Promise.all([i.uplinks.length > 0 ? i.uplinks : defaultRouteDevs(runner, settings.netns), vpnMarks(runner, i.fwmark, settings.netns)])
  if (devs.length === 0) throw usageError(`no default route in ${settings.netns ? `netns ${settings.netns}` : 'the host namespace'}`, 'name the interfaces to intercept with --uplink')
  return {...settings, intercept: {...i, uplinks: devs, vpnMarks: marks}}
}

export interface RoutingMoved {
  /** the uplinks taken from the default routes (no --uplink) are other interfaces now */
  uplinks?: {from: string[]; to: string[]}
  /** the VPN marks are others now (a VPN came up or went down) */
  vpnMarks?: {from: string[]; to: string[]}
}

/** What resolveRouting found that differs from the running instance's record, when nothing else
 * does: the routes moved (another network, an interface gone, a VPN up or down), and up follows
 * them. undefined: they did not, or given uplinks differ, or something else differs too (then the
 * usual refusal lists it all). */
export function movedRouting(recorded: UpSettings | undefined, wanted: UpSettings, resolved: UpSettings): RoutingMoved | undefined {
  const [was, now] = [recorded?.intercept, resolved.intercept]
  if (!was || !now) return undefined
  const same = (a: string[], b: string[]) => JSON.stringify(a) === JSON.stringify(b)
  const uplinks = wanted.intercept?.uplinks.length === 0 && !same(was.uplinks, now.uplinks) ? {from: was.uplinks, to: now.uplinks} : undefined
  const vpnMarks = same(was.vpnMarks, now.vpnMarks) ? undefined : {from: was.vpnMarks, to: now.vpnMarks}
  if (!uplinks && !vpnMarks) return undefined
  if (diffSettings({...recorded!, fastpath: resolved.fastpath, intercept: {...was, uplinks: uplinks ? now.uplinks : was.uplinks, vpnMarks: now.vpnMarks}}, resolved).length > 0) return undefined
  return {...(uplinks && {uplinks}), ...(vpnMarks && {vpnMarks})}
}

/** What moved, in words: 'uplinks up0 → tun0, up0 (the default routes moved)'. */
export function routingMovedText(m: RoutingMoved): string {
  const list = (l: string[]) => (l.length ? l.join(', ') : 'none')
  return [
    ...(m.uplinks ? [`uplinks ${list(m.uplinks.from)} → ${list(m.uplinks.to)} (the default routes moved)`] : []),
    ...(m.vpnMarks ? [`VPN marks ${list(m.vpnMarks.from)} → ${list(m.vpnMarks.to)} (the policy rules changed)`] : []),
  ].join(', ')
}

/** Where interception's tc programs sit: lo's ingress, each uplink's egress and, with UDP, its
 * ingress, and each --lan interface's ingress. */
export interface Hook {
  dev: string
  direction: tc.Direction
  prog?: TcProg
}

export function interceptHooks(i: InterceptSettings): Hook[] {
  return [
    {dev: 'lo', direction: 'ingress'},
    ...i.uplinks.flatMap((dev): Hook[] => [{dev, direction: 'egress'}, ...(i.udp ? [{dev, direction: 'ingress' as const, prog: 'uplink-ingress' as const}] : [])]),
    ...i.lan.map((dev): Hook => ({dev, direction: 'ingress', prog: 'lan-ingress'})),
  ]
}

/** Observes the target netns; refuses, before anything changes, what would collide. */
/**
 * Reads what interception needs from the target namespace and refuses what collides. `ours`: the
 * changes of the running instance a `--replace` takes down first; a dry run cannot take them down, so
 * it counts them as gone (they are no collision, their qdiscs will be missing, the sysctl's old value
 * is the recorded one).
 */
export async function gatherInterceptFacts(runner: Runner, settings: UpSettings, ours: Change[] = []): Promise<InterceptFacts> {
  const i = settings.intercept!
  const ns = settings.netns
  const has = (c: Change) => ours.some((o) => Object.entries(c).every(([k, v]) => (o as Record<string, unknown>)[k] === v))
  const recorded = ours.find((c): c is Extract<Change, {kind: 'sysctl'}> => c.kind === 'sysctl' && c.key === ACCEPT_LOCAL)
  // every read started at once (each is a program run); the checks below take them in their order,
  // so the first problem named stays the same (a read that failed throws where it is taken)
  const reads = onceEach(runner)
  await Promise.allSettled([
    ...families(i).flatMap((family) => [ip.rules(reads, family, ns), ip.routes(reads, family, String(i.table), ns)]),
    ...interceptHooks(i).flatMap(({dev, direction}) => [tc.filters(reads, dev, direction, ns), tc.qdiscs(reads, dev, ns)]),
    ...(recorded ? [] : [sysctl.get(reads, ACCEPT_LOCAL, ns)]),
    ip.links(reads, ns),
  ])
  runner = reads
  const links = await ip.links(runner, ns)
  const l3: string[] = []
  for (const [flag, devs] of [['--uplink', i.uplinks], ['--lan', i.lan]] as const)
    for (const dev of devs) {
      const link = links.find((l) => l.ifname === dev)
      if (!link) throw usageError(`interface ${dev} does not exist${ns ? ` in netns ${ns}` : ''}`, `check \`ip link\` and pass an existing interface with ${flag}`)
      const layer = linkLayer(link)
      if (!layer) throw usageError(`interface ${dev} has link type ${link.link_type}, which skfp cannot intercept on`, `give ${flag} an Ethernet-like interface (physical, veth, bridge) or one without link-layer header (tun, WireGuard)`)
      if (layer === 'l3') l3.push(dev) // an interface is given once (parseUpFlags)
    }
  const lo = links.find((l) => l.ifname === 'lo')
  if (!lo) throw usageError('no lo interface', 'the target namespace needs a loopback interface')
  for (const family of families(i)) {
    for (const r of await ip.rules(runner, family, ns)) {
      const fwmark = markOf(r.fwmark)
      if (fwmark !== undefined && has({kind: 'rule', family, fwmark, table: Number(r.table), priority: r.priority})) continue
      if (fwmark === i.fwmark) throw conflictError(`an ip -${family} rule already uses fwmark 0x${i.fwmark.toString(16)} (priority ${r.priority})`, 'choose another mark with --fwmark')
      if (r.priority === RULE_PRIORITY) throw conflictError(`an ip -${family} rule already sits at priority ${RULE_PRIORITY}`, 'remove it, or run `skfp down` if skfp left it')
      if (r.table === String(i.table)) throw conflictError(`an ip -${family} rule already looks up table ${i.table}`, 'choose another table with --table')
    }
    const routes = await ip.routes(runner, family, String(i.table), ns)
    if (routes.length > 0 && !has({kind: 'route', family, table: i.table})) throw conflictError(`table ${i.table} already has IPv${family} routes`, 'choose another table with --table')
  }
  const needsClsact: string[] = []
  for (const {dev, direction: dir} of interceptHooks(i)) {
    const ownFilter = has({kind: 'tc-filter', dev, direction: dir, prio: tc.FILTER_PREF, handle: Number.parseInt(tc.FILTER_HANDLE, 16)})
    if (!ownFilter && (await tc.filters(runner, dev, dir, ns)).some((f) => f.pref === tc.FILTER_PREF))
      throw conflictError(`a tc filter already sits at pref ${tc.FILTER_PREF} on ${dev} ${dir}`, 'remove it, or run `skfp down` if skfp left it')
    const clsactGoes = has({kind: 'qdisc', dev})
    if ((clsactGoes || !tc.hasClsact(await tc.qdiscs(runner, dev, ns))) && !needsClsact.includes(dev)) needsClsact.push(dev)
  }
  const oldAcceptLocal = recorded?.old ?? (await sysctl.get(runner, ACCEPT_LOCAL, ns))
  if (oldAcceptLocal === undefined) throw usageError(`cannot read ${ACCEPT_LOCAL}`, 'the target namespace needs IPv4 on lo')
  return {loIfindex: lo.ifindex, oldAcceptLocal, needsClsact, l3}
}

/** In the order up applies them; the uplink filters last, so interception starts when all is ready. */
export function interceptChanges(i: InterceptSettings, facts: InterceptFacts): Change[] {
  const changes: Change[] = [{kind: 'sysctl', key: ACCEPT_LOCAL, old: facts.oldAcceptLocal, value: '1'}]
  for (const family of families(i)) changes.push({kind: 'rule', family, fwmark: i.fwmark, table: i.table, priority: RULE_PRIORITY}, {kind: 'route', family, table: i.table})
  const qdiscs = new Set<string>()
  for (const {dev, direction, prog} of interceptHooks(i)) {
    if (facts.needsClsact.includes(dev) && !qdiscs.has(dev)) changes.push({kind: 'qdisc', dev})
    qdiscs.add(dev)
    changes.push({kind: 'tc-filter', dev, direction, prio: tc.FILTER_PREF, handle: Number.parseInt(tc.FILTER_HANDLE, 16), ...(prog ? {prog} : {}), ...(facts.l3.includes(dev) ? {l3: true as const} : {})})
  }
  return changes
}

const ONE = Uint8Array.of(1)

/** Bypass entries: the CIDRs and ports given, the family the proxy does not listen on, and the cgroup scope. */
export function bypassWrites(i: InterceptSettings, pins: InstancePins): Cmd[] {
  const cidrs = [...i.bypass, ...(i.proxyAddr4 ? [] : ['0.0.0.0/0']), ...(i.proxyAddr6 ? [] : ['::/0'])].map((c) => parseCidr(c))
  const cmds = cidrs.map((c) => {
    const key = new Uint8Array(4 + c.addr.length)
    new DataView(key.buffer).setUint32(0, c.prefix, true)
    key.set(c.addr, 4)
    return bpftool.mapUpdate(c.family === 4 ? pins.map.bypass4 : pins.map.bypass6, key, ONE)
  })
  for (const port of i.bypassPorts) {
    const key = new Uint8Array(2)
    new DataView(key.buffer).setUint16(0, port, true)
    cmds.push(bpftool.mapUpdate(pins.map.bypassPorts, key, ONE))
  }
  // a cgroup v2 id is its directory's inode number
  for (const [list, value] of [[i.interceptCgroups, CGROUP_INTERCEPT], [i.bypassCgroups, CGROUP_BYPASS]] as const)
    for (const dir of list) {
      const key = new Uint8Array(8)
      new DataView(key.buffer).setBigUint64(0, statSync(dir, {bigint: true}).ino, true)
      cmds.push(bpftool.mapUpdate(pins.map.cgroups, key, Uint8Array.of(value)))
    }
  return cmds
}

export interface InterceptObserved {
  /** A listener on the proxy's address and port, per family. */
  listening: Record<4 | 6, boolean>
  /** An unconnected UDP socket there (with UDP on). */
  udpListening: Record<4 | 6, boolean>
  filters: Record<string, boolean>
  qdiscForeignFilters: Record<string, number>
  qdiscs: Record<string, boolean>
  rules: Record<4 | 6, boolean>
  routes: Record<4 | 6, boolean>
  sysctl: Record<string, string | undefined>
}

/** What of the recorded interception changes is still in place (all gone when the netns is). */
export async function observeIntercept(runner: Runner, i: InterceptSettings, changes: Change[], netns?: string): Promise<InterceptObserved> {
  const o: InterceptObserved = {listening: {4: false, 6: false}, udpListening: {4: false, 6: false}, filters: {}, qdiscForeignFilters: {}, qdiscs: {}, rules: {4: false, 6: false}, routes: {4: false, 6: false}, sysctl: {}}
  if (netns && !existsSync(`/run/netns/${netns}`)) return o
  const port = `:${i.proxyPort}`
  const on = (list: string[], f: 4 | 6) =>
    f === 4
      ? !!i.proxyAddr4 && list.some((a) => a === `${i.proxyAddr4}${port}` || a === `0.0.0.0${port}` || a === `*${port}`)
      : !!i.proxyAddr6 && list.some((a) => a === `[${i.proxyAddr6}]${port}` || a === `[::]${port}` || a === `*${port}`)
  // each hook's filters are read once, for its qdisc and its filter alike; the reads run at once
  // (each change writes its own keys of o)
  const reads = onceEach(runner)
  const [{tcp, udp}] = await Promise.all([ip.listeners(runner, netns), ...changes.map((c) => observeChange(reads, c, o, netns))])
  for (const f of [4, 6] as const) [o.listening[f], o.udpListening[f]] = [on(tcp, f), i.udp && on(udp, f)]
  return o
}

