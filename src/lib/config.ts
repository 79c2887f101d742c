/**
 * Byte-exact encoders for the structs of bpf/skfp.h (little-endian host). The layout is checked
 * by unit tests and against bpftool's BTF dump in an integration test.
 */
export const CFG_FASTPATH = 1 << 0
export const CFG_INTERCEPT = 1 << 1
export const CFG_BYPASS_PRIVATE = 1 << 2
export const CFG_HAS_PROXY_V4 = 1 << 3
export const CFG_HAS_PROXY_V6 = 1 << 4
export const CFG_UDP = 1 << 5
export const CFG_CGROUP_SCOPE = 1 << 6
export const CFG_CGROUP_ONLY = 1 << 7
export const CFG_ADAPTIVE = 1 << 8
/** skfp_cgroups values (SKFP_CGROUP_* in bpf/skfp.h). */
export const CGROUP_INTERCEPT = 1
export const CGROUP_BYPASS = 2
/** Entries of skfp_cgroups (SKFP_CGROUPS_MAX in bpf/lib/maps.h). */
export const CGROUPS_MAX = 64

export const PROXY_DOWN_MODES = ['fail-fast', 'fail-closed', 'pass'] as const
export type ProxyDownMode = (typeof PROXY_DOWN_MODES)[number]

export const CONFIG_SIZE = 88
/** Slots for the marks of VPNs' own packets (SKFP_VPN_MARKS in bpf/skfp.h). */
export const VPN_MARKS = 4
export const RECORD_MAX = 4088
/** Entries of each bypass map (SKFP_BYPASS_MAX in bpf/lib/maps.h). */
export const BYPASS_MAX = 256
export const RECORD_SIZE = 8 + RECORD_MAX
export const RECORD_VERSION = 1

/** struct skfp_config, as TypeScript sees it. */
export interface DatapathConfig {
  flags: number
  proxyMark: number
  fwmark: number
  loIfindex: number
  proxyAddr4?: string // dotted quad
  proxyAddr6?: string // any IPv6 text form
  proxyPort: number
  proxyDown: ProxyDownMode
  fastpathQueue: bigint
  /** Marks (with their masks) of a VPN's own packets, which go direct; at most VPN_MARKS. */
  vpnMarks?: {mark: number; mask: number}[]
}

/** enum skfp_counter, in order; null: a slot no longer used. */
const COUNTER_SLOTS = [
  'socketsAdded',
  'socketInsertFailures',
  'connectionsPaired',
  'messagesRedirected',
  'bytesRedirected',
  'messagesFallback',
  'bytesFallback',
  'guardDemotions',
  'guardPromotions',
  'tcSeen',
  'tcBypassed',
  'tcRedirected',
  'tcAssignedEstablished',
  'tcAssignedListener',
  'tcNoListener',
  null,
  null,
  'tcForwarded',
  'udpSeen',
  'udpBypassed',
  'udpAnswers',
  'udpRedirected',
  'udpAssigned',
  'udpNoProxy',
  'udpFragmentsDropped',
  'lanSeen',
  'lanDirect',
  'lanAssigned',
  'lanNoProxy',
  'outOfScope',
  'assignRefused',
  'readersPromoted',
  'readersSplice',
  'readersWaitall',
  'readersBlocking',
  'readersBarred',
  'readersStranded',
  'messagesUnpromoted',
  'socketsBlocking',
  'socketsReleased',
  'handshakesAmbiguous',
  'finsHeld',
] as const
export type CounterName = Exclude<(typeof COUNTER_SLOTS)[number], null>
export const COUNTER_NAMES = COUNTER_SLOTS.filter((n): n is CounterName => n !== null)
export type Counters = Record<CounterName, number>

/**
 * size: the value size of the map being written, when it is not this version's (an instance
 * loaded by an older skfp has a shorter struct: its later fields are left out).
 */
export function encodeConfig(c: DatapathConfig, size = CONFIG_SIZE): Uint8Array {
  const buf = new Uint8Array(Math.max(size, CONFIG_SIZE))
  const v = new DataView(buf.buffer)
  let flags = c.flags
  if (c.proxyAddr4) flags |= CFG_HAS_PROXY_V4
  if (c.proxyAddr6) flags |= CFG_HAS_PROXY_V6
  v.setUint32(0, flags >>> 0, true)
  v.setUint32(4, c.proxyMark >>> 0, true)
  v.setUint32(8, c.fwmark >>> 0, true)
  v.setUint32(12, c.loIfindex >>> 0, true)
  if (c.proxyAddr4) buf.set(ipv4Bytes(c.proxyAddr4), 16)
  if (c.proxyAddr6) buf.set(ipv6Bytes(c.proxyAddr6), 20)
  v.setUint16(36, c.proxyPort, true)
  v.setUint8(38, PROXY_DOWN_MODES.indexOf(c.proxyDown))
  v.setBigUint64(40, c.fastpathQueue, true)
  for (const [i, m] of (c.vpnMarks ?? []).slice(0, VPN_MARKS).entries()) {
    v.setUint32(56 + 4 * i, m.mark >>> 0, true)
    v.setUint32(56 + 4 * VPN_MARKS + 4 * i, m.mask >>> 0, true)
  }
  return buf.subarray(0, size)
}

/** Also reads the shorter struct of an older skfp: the fields it lacks read as 0. */
export function decodeConfig(buf: Uint8Array): DatapathConfig {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const flags = v.getUint32(0, true)
  return {
    flags,
    proxyMark: v.getUint32(4, true),
    fwmark: v.getUint32(8, true),
    loIfindex: v.getUint32(12, true),
    proxyAddr4: flags & CFG_HAS_PROXY_V4 ? [...buf.subarray(16, 20)].join('.') : undefined,
    proxyAddr6: flags & CFG_HAS_PROXY_V6 ? ipv6Text(buf.subarray(20, 36)) : undefined,
    proxyPort: v.getUint16(36, true),
    proxyDown: PROXY_DOWN_MODES[v.getUint8(38)] ?? 'fail-fast',
    fastpathQueue: v.getBigUint64(40, true),
    vpnMarks:
      buf.byteLength >= CONFIG_SIZE
        ? Array.from({length: VPN_MARKS}, (_, i) => ({mark: v.getUint32(56 + 4 * i, true), mask: v.getUint32(56 + 4 * VPN_MARKS + 4 * i, true)})).filter((m) => m.mask !== 0)
        : [],
  }
}

export function encodeRecord(record: unknown): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(record))
  if (json.length > RECORD_MAX) throw new Error(`record too large: ${json.length} > ${RECORD_MAX} bytes`)
  const buf = new Uint8Array(RECORD_SIZE)
  const v = new DataView(buf.buffer)
  v.setUint32(0, RECORD_VERSION, true)
  v.setUint32(4, json.length, true)
  buf.set(json, 8)
  return buf
}

/** The record's JSON, or undefined for an empty (never written) or foreign entry. */
export function decodeRecord<T>(buf: Uint8Array): T | undefined {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const len = v.getUint32(4, true)
  if (v.getUint32(0, true) !== RECORD_VERSION || len === 0 || len > RECORD_MAX) return undefined
  return JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + len))) as T
}

export function decodeCounters(sums: bigint[]): Counters {
  return Object.fromEntries(COUNTER_SLOTS.flatMap((name, i) => (name ? [[name, Number(sums[i] ?? 0n)]] : []))) as Counters
}

export const KEY_ZERO = new Uint8Array(4)

export function ipv4Bytes(addr: string): Uint8Array {
  const parts = addr.split('.')
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) throw new Error(`not an IPv4 address: ${addr}`)
  return Uint8Array.from(parts.map(Number))
}

export function ipv6Bytes(addr: string): Uint8Array {
  let text = addr
  const out = new Uint8Array(16)
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4) {
    const b = ipv4Bytes(v4[1])
    text = text.slice(0, -v4[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`
  }
  const halves = text.split('::')
  if (halves.length > 2) throw new Error(`not an IPv6 address: ${addr}`)
  const head = halves[0] ? halves[0].split(':') : []
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':') : []
  const groups = halves.length === 2 ? [...head, ...Array(8 - head.length - rest.length).fill('0'), ...rest] : head
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) throw new Error(`not an IPv6 address: ${addr}`)
  groups.forEach((g, i) => {
    const n = Number.parseInt(g, 16)
    out[2 * i] = n >> 8
    out[2 * i + 1] = n & 0xff
  })
  return out
}

export function ipv6Text(bytes: Uint8Array): string {
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16))
  // compress the longest run of zero groups, as inet_ntop does
  let best = [-1, 0]
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue }
    let j = i
    while (j < 8 && groups[j] === '0') j++
    if (j - i > best[1] && j - i > 1) best = [i, j - i]
    i = j
  }
  if (best[0] < 0) return groups.join(':')
  return `${groups.slice(0, best[0]).join(':')}::${groups.slice(best[0] + best[1]).join(':')}`
}
