/**
 * Packets built byte by byte for BPF_PROG_TEST_RUN (prog-run.test.ts): Ethernet + IPv4 or IPv6
 * (optionally with extension headers or a fragment) + TCP or UDP, checksums filled in; and the
 * reading back of what a program wrote.
 */
import {parseAddress} from '../../src/lib/net.js'

export const ETH_LEN = 14
const MAC_A = Buffer.from('02aaaaaaaa01', 'hex')
const MAC_B = Buffer.from('02bbbbbbbb02', 'hex')
export const TCP_SYN = 0x02
export const TCP_RST = 0x04
export const TCP_ACK = 0x10
const IPPROTO = {hopopts: 0, tcp: 6, udp: 17, routing: 43, fragment: 44, icmp: 1, icmpv6: 58, dstopts: 60} as const

export interface PacketSpec {
  proto: 'tcp' | 'udp'
  src: string
  dst: string
  sport: number
  dport: number
  /** TCP flags byte (default SYN). */
  flags?: number
  seq?: number
  payload?: Buffer
  /** IPv6 extension headers before the transport header, in order. */
  ext?: ('hopopts' | 'routing' | 'dstopts')[]
  /** IPv4: more-fragments set; IPv6: a fragment header (offset 0, more fragments). */
  fragment?: boolean
  /** Bytes cut off the end (a truncated packet). */
  truncate?: number
}

/** The bytes of an address (v4: 4, v6: 16), parsed as skfp parses --bypass. */
export function addrBytes(addr: string): Buffer {
  const a = parseAddress(addr)
  if (!a) throw new Error(`not an address: ${addr}`)
  return Buffer.from(a.bytes)
}

/** The internet checksum (RFC 1071) of the concatenated buffers. */
export function checksum(...parts: Buffer[]): number {
  const data = Buffer.concat(parts)
  let sum = 0
  for (let i = 0; i < data.length; i += 2) sum += (data[i] << 8) + (i + 1 < data.length ? data[i + 1] : 0)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

function pseudo(src: Buffer, dst: Buffer, proto: number, len: number): Buffer {
  if (src.length === 4) {
    const p = Buffer.alloc(12)
    src.copy(p, 0)
    dst.copy(p, 4)
    p[9] = proto
    p.writeUInt16BE(len, 10)
    return p
  }
  const p = Buffer.alloc(40)
  src.copy(p, 0)
  dst.copy(p, 16)
  p.writeUInt32BE(len, 32)
  p[39] = proto
  return p
}

export function packet(s: PacketSpec): Buffer {
  const src = addrBytes(s.src)
  const dst = addrBytes(s.dst)
  const v4 = src.length === 4
  const payload = s.payload ?? Buffer.alloc(0)
  const proto = IPPROTO[s.proto]
  let l4: Buffer
  if (s.proto === 'tcp') {
    l4 = Buffer.alloc(20 + payload.length)
    l4.writeUInt16BE(s.sport, 0)
    l4.writeUInt16BE(s.dport, 2)
    l4.writeUInt32BE(s.seq ?? 1000, 4)
    l4[12] = 5 << 4
    l4[13] = s.flags ?? TCP_SYN
    l4.writeUInt16BE(64240, 14)
    payload.copy(l4, 20)
    l4.writeUInt16BE(checksum(pseudo(src, dst, proto, l4.length), l4), 16)
  } else {
    l4 = Buffer.alloc(8 + payload.length)
    l4.writeUInt16BE(s.sport, 0)
    l4.writeUInt16BE(s.dport, 2)
    l4.writeUInt16BE(l4.length, 4)
    payload.copy(l4, 8)
    l4.writeUInt16BE(checksum(pseudo(src, dst, proto, l4.length), l4) || 0xffff, 6)
  }
  let ip: Buffer
  if (v4) {
    ip = Buffer.alloc(20)
    ip[0] = 0x45
    ip.writeUInt16BE(20 + l4.length, 2)
    if (s.fragment) ip.writeUInt16BE(0x2000, 6) // more fragments
    ip[8] = 64
    ip[9] = proto
    src.copy(ip, 12)
    dst.copy(ip, 16)
    ip.writeUInt16BE(checksum(ip), 10)
  } else {
    // extension headers, each 8 bytes (next header, length 0, six bytes of padding options)
    const chain: {type: number; bytes: Buffer}[] = (s.ext ?? []).map((e) => ({type: IPPROTO[e], bytes: Buffer.alloc(8)}))
    if (s.fragment) {
      const f = Buffer.alloc(8)
      f.writeUInt16BE(1, 2) // offset 0, more fragments
      f.writeUInt32BE(0x5cf0, 4)
      chain.push({type: IPPROTO.fragment, bytes: f})
    }
    for (const [i, h] of chain.entries()) {
      h.bytes[0] = i + 1 < chain.length ? chain[i + 1].type : proto
      if (h.type === IPPROTO.routing) h.bytes[2] = 0 // routing type 0, segments left 0
    }
    const ext = Buffer.concat(chain.map((h) => h.bytes))
    ip = Buffer.alloc(40)
    ip[0] = 0x60
    ip.writeUInt16BE(ext.length + l4.length, 4)
    ip[6] = chain.length ? chain[0].type : proto
    ip[7] = 64
    src.copy(ip, 8)
    dst.copy(ip, 24)
    ip = Buffer.concat([ip, ext])
  }
  const eth = Buffer.alloc(ETH_LEN)
  MAC_B.copy(eth, 0) // to the gateway
  MAC_A.copy(eth, 6)
  eth.writeUInt16BE(v4 ? 0x0800 : 0x86dd, 12)
  const whole = Buffer.concat([eth, ip, l4])
  return s.truncate ? whole.subarray(0, whole.length - s.truncate) : whole
}

/** An ARP request: not IP, every program lets it pass. */
export function arp(): Buffer {
  const b = Buffer.alloc(42)
  b.fill(0xff, 0, 6)
  MAC_A.copy(b, 6)
  b.writeUInt16BE(0x0806, 12)
  return b
}

export interface Decoded {
  ethDst: Buffer
  ethSrc: Buffer
  family: 4 | 6
  src: Buffer
  dst: Buffer
  proto: number
  ttl: number
  /** The IPv4 header checksum verifies (always true for IPv6, which has none). */
  ipChecksumOk: boolean
  /** The transport header and what follows it. */
  l4: Buffer
  /** The transport checksum verifies over the pseudo header. */
  l4ChecksumOk: boolean
}

/** Reads back a packet a program wrote (no extension headers: skfp writes none). */
export function decode(b: Buffer): Decoded {
  const ethDst = b.subarray(0, 6)
  const ethSrc = b.subarray(6, 12)
  if (b.readUInt16BE(12) === 0x0800) {
    const ip = b.subarray(ETH_LEN, ETH_LEN + 20)
    const l4 = b.subarray(ETH_LEN + 20, ETH_LEN + ip.readUInt16BE(2))
    const src = ip.subarray(12, 16)
    const dst = ip.subarray(16, 20)
    const l4ok = ip[9] === IPPROTO.icmp ? checksum(l4) === 0 : checksum(pseudo(src, dst, ip[9], l4.length), l4) === 0
    return {ethDst, ethSrc, family: 4, src, dst, proto: ip[9], ttl: ip[8], ipChecksumOk: checksum(ip) === 0, l4, l4ChecksumOk: l4ok}
  }
  const ip = b.subarray(ETH_LEN, ETH_LEN + 40)
  const l4 = b.subarray(ETH_LEN + 40, ETH_LEN + 40 + ip.readUInt16BE(4))
  const src = ip.subarray(8, 24)
  const dst = ip.subarray(24, 40)
  return {ethDst, ethSrc, family: 6, src, dst, proto: ip[6], ttl: ip[7], ipChecksumOk: true, l4, l4ChecksumOk: checksum(pseudo(src, dst, ip[6], l4.length), l4) === 0}
}
