/** `skfp up` flags → validated settings. Everything is checked before anything changes. */
import {posix} from 'node:path'
import {BYPASS_MAX, CGROUPS_MAX, PROXY_DOWN_MODES, RECORD_MAX, type ProxyDownMode} from './config.js'
import {usageError} from './errors.js'
import {parseAddress, parseCidr, validateInterface} from './net.js'
import {validateInstance} from './pins.js'

/** auto: the adaptive fastpath where the self-test passes; on: adaptive, without the self-test; all:
 * every paired socket takes redirected bytes at once (no reader is watched: for applications known not
 * to use splice() or MSG_WAITALL); off. */
export const FASTPATH_MODES = ['on', 'off', 'auto', 'all'] as const
export type FastpathMode = (typeof FASTPATH_MODES)[number]

export const DEFAULT_FASTPATH_QUEUE = 4 * 1024 * 1024

/** Interception: on when --proxy-port is given. */
export interface InterceptSettings {
  /** Empty: the interfaces of the default routes in the target netns (resolved before planning). */
  uplinks: string[]
  proxyPort: number
  proxyAddr4: string | null
  proxyAddr6: string | null
  fwmark: number
  table: number
  /** Normalised CIDRs (host bits cleared). */
  bypass: string[]
  bypassPorts: number[]
  bypassPrivate: boolean
  proxyDown: ProxyDownMode
  /** UDP to intercepted destinations goes to the proxy's UDP socket on the same port too. */
  udp: boolean
  /** Interfaces whose incoming (forwarded) traffic is intercepted: LAN ports, bridges. */
  lan: string[]
  /** cgroup v2 directories (absolute): when any, only their sockets (and their descendants') are intercepted. */
  interceptCgroups: string[]
  /** cgroup v2 directories whose sockets (and their descendants') are never intercepted. */
  bypassCgroups: string[]
  /** The marks of a VPN's own packets, which go direct ('0xca6c', '0x80000/0xff0000'): read from the
   * target netns's `not fwmark` policy rules at each up (intercept.ts, vpnMarks); [] from the flags. */
  vpnMarks: string[]
}

export const DEFAULT_FWMARK = 0x5cf0
export const DEFAULT_TABLE = 1487
/** Tables the kernel owns: local, main, default, unspec. */
const RESERVED_TABLES = [0, 253, 254, 255]

export interface UpSettings {
  instance: string
  /** Absolute cgroup v2 directory; the cgroup v2 root when not given. */
  cgroup: string
  netns?: string
  proxyMark: number
  fastpath: FastpathMode
  fastpathQueue: number
  intercept: InterceptSettings | null
}

export function parseInteger(name: string, text: string | number, min: number, max: number): number {
  const s = String(text).trim()
  const n = /^(0x[0-9a-f]+|\d+)$/i.test(s) ? Number(s) : Number.NaN
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw usageError(`--${name} ${JSON.stringify(String(text))} is out of range`, `give a whole number from ${min} to ${max}${max > 65535 ? ' (decimal or 0x hex)' : ''}`)
  return n
}

export const parseMark = (name: string, text: string | number) => parseInteger(name, text, 0, 0xffffffff)

export interface RawUpFlags {
  instance: string
  cgroup: string
  netns?: string
  'proxy-mark': string
  fastpath: string
  'fastpath-queue': string
  uplink?: string[]
  'proxy-port'?: string
  'proxy-addr'?: string[]
  fwmark?: string
  table?: string
  bypass?: string[]
  'bypass-port'?: string[]
  'bypass-private'?: boolean
  'proxy-down'?: string
  udp?: boolean
  lan?: string[]
  'intercept-cgroup'?: string[]
  'bypass-cgroup'?: string[]
}

const INTERCEPT_ONLY = ['uplink', 'proxy-addr', 'fwmark', 'table', 'bypass', 'bypass-port', 'proxy-down', 'udp', 'lan', 'intercept-cgroup', 'bypass-cgroup'] as const

function parseIntercept(flags: RawUpFlags, proxyMark: number): InterceptSettings | null {
  if (flags['proxy-port'] === undefined) {
    const stray = INTERCEPT_ONLY.find((f) => flags[f] !== undefined && !(Array.isArray(flags[f]) && (flags[f] as string[]).length === 0))
    if (stray) throw usageError(`--${stray} needs --proxy-port`, 'interception is on only with --proxy-port (the port of the proxy\'s transparent listener)')
    return null
  }
  const proxyPort = parseInteger('proxy-port', flags['proxy-port'], 1, 65535)
  if (proxyMark === 0) throw usageError('interception needs --proxy-mark', "give the SO_MARK the proxy puts on its own outbound sockets (its routing mark), or its upstream is intercepted again")
  const fwmark = parseInteger('fwmark', flags.fwmark ?? DEFAULT_FWMARK, 1, 0xffffffff)
  if (fwmark === proxyMark) throw usageError(`--fwmark ${fwmark} equals --proxy-mark`, 'the two marks must differ: the proxy mark lets the proxy\'s traffic pass, the fwmark routes intercepted packets locally')
  const table = parseInteger('table', flags.table ?? DEFAULT_TABLE, 1, 0xffffffff)
  if (RESERVED_TABLES.includes(table)) throw usageError(`--table ${table} is a table the kernel uses`, 'choose a table other than 253 (default), 254 (main) and 255 (local)')
  let proxyAddr4: string | null = null
  let proxyAddr6: string | null = null
  for (const text of flags['proxy-addr'] ?? []) {
    const a = parseAddress(text)
    if (!a) throw usageError(`--proxy-addr ${JSON.stringify(text)} is not an IP address`, 'give the address the proxy listens on, e.g. 127.0.0.1 or ::1')
    if (a.family === 4 ? proxyAddr4 : proxyAddr6) throw usageError(`--proxy-addr given twice for IPv${a.family}`, 'give at most one IPv4 and one IPv6 address')
    if (a.family === 4) proxyAddr4 = text
    else proxyAddr6 = text
  }
  if (!flags['proxy-addr']?.length) [proxyAddr4, proxyAddr6] = ['127.0.0.1', '::1']
  const uplinks = (flags.uplink ?? []).map(validateInterface)
  if (uplinks.includes('lo')) throw usageError('--uplink lo is not an uplink', 'give the interfaces traffic leaves the host by (see `ip route show default`)')
  const lan = [...new Set((flags.lan ?? []).map(validateInterface))]
  if (lan.includes('lo')) throw usageError('--lan lo is not a LAN interface', 'give the interface (or bridge) the LAN clients or containers are on, e.g. br-lan or docker0')
  const both = lan.find((d) => uplinks.includes(d))
  if (both) throw usageError(`${both} is given as both --lan and --uplink`, 'an interface is either where traffic leaves the host (--uplink) or where clients come in (--lan)')
  const proxyDown = flags['proxy-down'] ?? 'fail-fast'
  if (!PROXY_DOWN_MODES.includes(proxyDown as ProxyDownMode)) throw usageError(`--proxy-down ${JSON.stringify(proxyDown)} is not a mode`, 'use fail-fast, fail-closed or pass')
  return {
    uplinks: [...new Set(uplinks)],
    proxyPort,
    proxyAddr4,
    proxyAddr6,
    fwmark,
    table,
    bypass: [...new Set((flags.bypass ?? []).map((c) => parseCidr(c).text))],
    bypassPorts: [...new Set((flags['bypass-port'] ?? []).map((p) => parseInteger('bypass-port', p, 1, 65535)))],
    bypassPrivate: flags['bypass-private'] ?? true,
    proxyDown: proxyDown as ProxyDownMode,
    udp: flags.udp ?? true,
    lan,
    ...cgroupScope(flags),
    vpnMarks: [],
  }
}

/** --intercept-cgroup / --bypass-cgroup as absolute paths (that they are cgroup v2 directories is
 * checked with the host, by preflight). */
function cgroupScope(flags: RawUpFlags): Pick<InterceptSettings, 'interceptCgroups' | 'bypassCgroups'> {
  const [interceptCgroups, bypassCgroups] = [flags['intercept-cgroup'], flags['bypass-cgroup']].map((list) => [...new Set((list ?? []).map((p) => posix.resolve(p)))])
  const both = interceptCgroups.find((c) => bypassCgroups.includes(c))
  if (both) throw usageError(`${both} is given as both --intercept-cgroup and --bypass-cgroup`, 'a cgroup is either intercepted or bypassed; a descendant may be listed with the other flag')
  const n = interceptCgroups.length + bypassCgroups.length
  if (n > CGROUPS_MAX) throw usageError(`${n} --intercept-cgroup and --bypass-cgroup entries: at most ${CGROUPS_MAX} fit`, 'list parent cgroups: their descendants follow them')
  return {interceptCgroups, bypassCgroups}
}

/** Pure validation; cgroup and netns existence are checked by the caller (they touch the host). */
export function parseUpFlags(flags: RawUpFlags): UpSettings {
  validateInstance(flags.instance)
  if (!FASTPATH_MODES.includes(flags.fastpath as FastpathMode))
    throw usageError(`--fastpath ${JSON.stringify(flags.fastpath)} is not a mode`, 'use auto, on, all or off')
  const settings: UpSettings = {
    instance: flags.instance,
    cgroup: flags.cgroup,
    netns: flags.netns,
    proxyMark: parseMark('proxy-mark', flags['proxy-mark']),
    fastpath: flags.fastpath as FastpathMode,
    fastpathQueue: parseInteger('fastpath-queue', flags['fastpath-queue'], 64 * 1024, 1024 * 1024 * 1024),
    intercept: parseIntercept(flags, parseMark('proxy-mark', flags['proxy-mark'])),
  }
  checkLimits(settings)
  return settings
}

/** Bytes of the undo record that an instance's changes take besides its settings: measured 626
 * (sysctl, rules and routes of both families, lo's qdisc and filter), ~130 per uplink, ~100 for
 * an uplink's UDP ingress filter and ~150 per --lan interface (qdisc and filter). */
const RECORD_CHANGES_BUDGET = 768
const RECORD_PER_UPLINK = 160
const RECORD_PER_UDP_UPLINK = 120
const RECORD_PER_LAN = 200
/** The VPN marks up reads later (intercept.ts, vpnMarks): 4 of '0x80000/0xff0000' at most. */
const RECORD_VPN_MARKS = 96

/** The kernel side's limits, checked before anything runs: the bypass maps and the undo record. */
function checkLimits(s: UpSettings): void {
  const i = s.intercept
  if (!i) return
  const v6 = i.bypass.filter((c) => c.includes(':')).length
  for (const [what, n] of [['IPv4 --bypass', i.bypass.length - v6], ['IPv6 --bypass', v6], ['--bypass-port', i.bypassPorts.length]] as const)
    if (n > BYPASS_MAX) throw usageError(`${n} ${what} entries: at most ${BYPASS_MAX} fit`, 'merge them into shorter prefixes (or port ranges into fewer ports)')
  const bytes = new TextEncoder().encode(JSON.stringify(s)).length + RECORD_CHANGES_BUDGET + (RECORD_PER_UPLINK + (i.udp ? RECORD_PER_UDP_UPLINK : 0)) * i.uplinks.length + RECORD_PER_LAN * i.lan.length + RECORD_VPN_MARKS
  if (bytes > RECORD_MAX)
    throw usageError(`these settings need about ${bytes} bytes of the undo record, which holds ${RECORD_MAX}`, 'give fewer --bypass or --bypass-port entries (a shorter prefix covers several addresses)')
}

/** Human-readable differences between two settings (for `up` on a running instance). */
export function diffSettings(running: UpSettings, wanted: UpSettings): string[] {
  return diffObjects(running as object as Record<string, unknown>, wanted as object as Record<string, unknown>, '')
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** By value, whatever the order of the keys (a record's settings pass through withDefaults, which
 * orders them its own way); the interception settings one by one. */
function diffObjects(running: Record<string, unknown>, wanted: Record<string, unknown>, prefix: string): string[] {
  const out: string[] = []
  for (const k of new Set([...Object.keys(running), ...Object.keys(wanted)])) {
    const [a, b] = [running[k], wanted[k]]
    if (isRecord(a) && isRecord(b)) out.push(...diffObjects(a, b, `${prefix}${k}.`))
    else if (JSON.stringify(a) !== JSON.stringify(b)) out.push(`${prefix}${k}: ${JSON.stringify(a) ?? 'unset'} → ${JSON.stringify(b) ?? 'unset'}`)
  }
  return out
}

/** Settings an older skfp recorded that no longer exist (the hand-off wait's fastpathSpinUs). */
function withoutRetired<T extends object>(recorded: T): T {
  const {fastpathSpinUs: _retired, ...rest} = recorded as T & {fastpathSpinUs?: number}
  return rest as T
}

/**
 * The settings of a record written by an older skfp, completed: a setting it did not know takes its
 * default (the value that skfp ran with), so `up` with the same flags finds nothing to change.
 */
export function withDefaults(recorded: Partial<UpSettings> & Pick<UpSettings, 'instance' | 'cgroup'>): UpSettings {
  const i = recorded.intercept as Partial<InterceptSettings> | null | undefined
  return {
    proxyMark: 0,
    fastpath: 'auto',
    fastpathQueue: DEFAULT_FASTPATH_QUEUE,
    ...withoutRetired(recorded),
    intercept: i
      ? ({bypass: [], bypassPorts: [], bypassPrivate: true, proxyDown: 'fail-fast', fwmark: DEFAULT_FWMARK, table: DEFAULT_TABLE, proxyAddr4: null, proxyAddr6: null, uplinks: [], proxyPort: 0, udp: false, lan: [], interceptCgroups: [], bypassCgroups: [], vpnMarks: [], ...i} as InterceptSettings)
      : null,
  }
}

/** Settings for skfp's own sandboxes (demo, self-test, bench): the fastpath on, no interception. */
export function sandboxSettings(instance: string, cgroup: string, netns: string, over: Partial<UpSettings> = {}): UpSettings {
  return {instance, cgroup, netns, proxyMark: 0, fastpath: 'on', fastpathQueue: DEFAULT_FASTPATH_QUEUE, intercept: null, ...over}
}
