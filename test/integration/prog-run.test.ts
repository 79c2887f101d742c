// The interception programs of a real instance, run by the kernel on packets built byte by byte
// (BPF_PROG_TEST_RUN, through `bpftool prog run`): what the parser accepts and lets through, the
// bypass decisions, and the answers fail-fast builds (a TCP RST|ACK, ICMP and ICMPv6 port
// unreachable), their fields and checksums read back. The kernel gives the test run's packet a
// socket of its own and the namespace of the caller, so the egress program decides as it does for a
// local client in the sandbox's host namespace: with the proxy's sockets looked up there.
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {programPath} from '../../src/lib/build.js'
import {resolveTool} from '../../src/lib/exec.js'
import {waitForOutput} from '../../src/lib/iperf.js'
import {instancePins} from '../../src/lib/pins.js'
import {Sandbox} from '../../src/lib/sandbox.js'
import {requireRoot, runner, sandboxName, skfp, status} from './helpers.js'
import {addrBytes, arp, decode, ETH_LEN, packet, TCP_ACK, TCP_RST, type PacketSpec} from './packets.js'
import {interceptArgs, PROXY_MARK, PROXY_PORT, proxyTopology, REMOTE4, REMOTE6, waitForListener} from './topology.js'

const TC_ACT_OK = 0
const TC_ACT_SHOT = 2
const TC_ACT_REDIRECT = 7
const FWMARK = 0x5cf0 // up's default
const LOCAL4 = '198.18.0.1'
const LOCAL6 = 'fd00:18::1'

let sb: Sandbox
let host: string
let uplinkIndex: number
let dir: string
let egress: string
let proxies: ReturnType<Sandbox['start']>[] = []

interface Run {
  retval: number
  /** skb->mark after the run. */
  mark: number
  out: Buffer
}

/** Runs PROG once on PKT as if sent on the uplink (ctx: mark, ifindex), in the host namespace. */
async function run(prog: string, pkt: Buffer, mark = 0): Promise<Run> {
  const ctx = Buffer.alloc(48) // struct __sk_buff up to tc_index: mark at 8, ifindex at 40
  ctx.writeUInt32LE(mark, 8)
  ctx.writeUInt32LE(uplinkIndex, 40)
  const f = (n: string) => join(dir, n)
  writeFileSync(f('in'), pkt)
  writeFileSync(f('ctx'), ctx)
  const r = await sb.run(host, [resolveTool('bpftool'), '-j', 'prog', 'run', 'pinned', prog, 'data_in', f('in'), 'data_out', f('out'), 'ctx_in', f('ctx'), 'ctx_out', f('ctx-out')], {outsideCgroup: true, allowFailure: true})
  if (r.exitCode !== 0) throw new Error(`bpftool prog run on ${pkt.toString('hex')}: ${r.stderr || r.stdout}`)
  const out = readFileSync(f('ctx-out'))
  return {retval: JSON.parse(r.stdout).retval, mark: out.readUInt32LE(8), out: readFileSync(f('out'))}
}

const syn = (dst: string, extra: Partial<PacketSpec> = {}): Buffer =>
  packet({proto: 'tcp', src: dst.includes(':') ? LOCAL6 : LOCAL4, dst, sport: 40000, dport: 80, seq: 7777, ...extra})
const datagram = (dst: string, extra: Partial<PacketSpec> = {}): Buffer =>
  packet({proto: 'udp', src: dst.includes(':') ? LOCAL6 : LOCAL4, dst, sport: 40001, dport: 53, payload: Buffer.from('skfp-prog-run'), ...extra})

beforeAll(async () => {
  requireRoot()
  sb = await Sandbox.create(runner, sandboxName('pr'))
  ;({host} = await proxyTopology(sb))
  uplinkIndex = JSON.parse((await sb.cmd(host, ['-j', 'link', 'show', 'up0'])).stdout)[0].ifindex
  const up = await skfp(interceptArgs(sb, host, ['--bypass', '198.18.9.0/24', '--bypass', '2001:2:9::/48', '--bypass-port', '853', '--proxy-down', 'fail-fast']))
  expect(up.exitCode, up.stderr).toBe(0)
  egress = instancePins(sb.name).prog.tcEgress
  dir = mkdtempSync(join(tmpdir(), 'skfp-tprog-'))
})

afterAll(async () => {
  if (dir) rmSync(dir, {recursive: true, force: true})
  if (sb) {
    await skfp(['down', '--instance', sb.name])
    await sb.destroy()
  }
})

async function startProxy(): Promise<void> {
  const relay = sb.start(host, [programPath('skfp-relay'), '--listen', `127.0.0.1:${PROXY_PORT}`, '--listen', `[::1]:${PROXY_PORT}`, '--mark', String(PROXY_MARK)])
  await new Promise<void>((resolve) => relay.stdout!.once('data', () => resolve()))
  proxies = [relay]
  for (const at of [`127.0.0.1:${PROXY_PORT}`, `[::1]:${PROXY_PORT}`]) {
    const udp = sb.start(host, [programPath('skfp-udp'), 'echo', '--listen', at])
    await waitForOutput(udp, /listening/)
    proxies.push(udp)
  }
  await waitForListener(sb, host, PROXY_PORT, 'tcp', 2)
  await waitForListener(sb, host, PROXY_PORT, 'udp', 2)
}

async function stopProxy(): Promise<void> {
  for (const p of proxies) {
    p.kill('SIGKILL')
    await p.catch(() => {})
  }
  proxies = []
}

describe('the egress program on crafted packets (BPF_PROG_TEST_RUN)', () => {
  it('with the proxy listening: SYNs and datagrams, v4 and v6 (also behind extension headers), are marked and turned to lo', async () => {
    await startProxy()
    try {
      const before = (await status(sb.name)).counters
      for (const pkt of [syn(REMOTE4), syn(REMOTE6), syn(REMOTE6, {ext: ['hopopts', 'routing', 'dstopts']}), datagram(REMOTE4), datagram(REMOTE6), datagram(REMOTE6, {ext: ['dstopts']})]) {
        const r = await run(egress, pkt)
        expect(r, pkt.toString('hex')).toMatchObject({retval: TC_ACT_REDIRECT, mark: FWMARK})
        expect(r.out.equals(pkt), 'the packet itself is left as it was').toBe(true)
      }
      const after = (await status(sb.name)).counters
      expect(after.tcRedirected - before.tcRedirected).toBe(3)
      expect(after.udpRedirected - before.udpRedirected).toBe(3)
    } finally {
      await stopProxy()
    }
  })

  it('the bypass decisions: listed CIDRs and ports, the proxy mark, loopback, link-local, multicast, private ranges, and a non-SYN of no proxy connection', async () => {
    const before = (await status(sb.name)).counters
    const direct: [string, Buffer, number?][] = [
      ['--bypass v4', syn('198.18.9.77')],
      ['--bypass v6', syn('2001:2:9::77')],
      ['--bypass-port', syn(REMOTE4, {dport: 853})],
      ['--bypass-port (UDP)', datagram(REMOTE6, {dport: 853})],
      ['the proxy mark', syn(REMOTE4), PROXY_MARK],
      ['the proxy mark (UDP)', datagram(REMOTE4), PROXY_MARK],
      ['loopback', syn('127.0.0.9')],
      ['link-local v4', syn('169.254.1.1')],
      ['link-local v6', syn('fe80::1')],
      ['multicast v4', datagram('239.1.2.3')],
      ['multicast v6', datagram('ff02::fb')],
      ['private (--bypass-private)', syn('10.1.2.3')],
      ['private v6 (--bypass-private)', syn('fd12::1')],
      ['an ACK of no proxy connection', syn(REMOTE4, {flags: TCP_ACK})],
    ]
    for (const [what, pkt, mark] of direct) {
      const r = await run(egress, pkt, mark ?? 0)
      expect(r, what).toMatchObject({retval: TC_ACT_OK, mark: mark ?? 0})
      expect(r.out.equals(pkt), what).toBe(true)
    }
    const after = (await status(sb.name)).counters
    expect(after.tcBypassed - before.tcBypassed).toBe(10)
    expect(after.udpBypassed - before.udpBypassed).toBe(4)
  })

  it('the parser: what is not a whole TCP or UDP packet passes untouched; UDP fragments are dropped and counted', async () => {
    const before = (await status(sb.name)).counters
    const untouched: [string, Buffer][] = [
      ['ARP', arp()],
      ['a TCP header cut short', syn(REMOTE4, {truncate: 8})],
      ['a UDP header cut short (v6)', datagram(REMOTE6, {truncate: 16})],
      // (an IP header cut short is refused by the test run itself, and never sent by the stack)
      ['an IPv4 header length below 5 words', (() => {
        const p = syn(REMOTE4)
        p[ETH_LEN] = 0x44
        return p
      })()],
      ['more IPv6 extension headers than walked (5)', syn(REMOTE6, {ext: ['hopopts', 'dstopts', 'routing', 'dstopts', 'dstopts']})],
      ['a TCP fragment', syn(REMOTE4, {fragment: true})],
      ['ICMP', (() => {
        const p = syn(REMOTE4)
        p[ETH_LEN + 9] = 1
        return p
      })()],
    ]
    for (const [what, pkt] of untouched) {
      const r = await run(egress, pkt)
      expect(r, what).toMatchObject({retval: TC_ACT_OK, mark: 0})
      expect(r.out.equals(pkt), what).toBe(true)
    }
    for (const pkt of [datagram(REMOTE4, {fragment: true}), datagram(REMOTE6, {fragment: true})]) expect((await run(egress, pkt)).retval).toBe(TC_ACT_SHOT)
    const after = (await status(sb.name)).counters
    expect(after.udpFragmentsDropped - before.udpFragmentsDropped).toBe(2)
    expect(after.tcRedirected - before.tcRedirected).toBe(0)
  })

  it('fail-fast with no proxy: a SYN becomes the RST|ACK a closed port sends, back in on the uplink; a datagram the ICMP port unreachable', async () => {
    for (const dst of [REMOTE4, REMOTE6]) {
      const pkt = syn(dst, {payload: Buffer.from('TFO data that goes')})
      const r = await run(egress, pkt)
      expect(r.retval, dst).toBe(TC_ACT_REDIRECT)
      expect(r.mark).toBe(0)
      const d = decode(r.out)
      expect(r.out.length, 'cut to the headers').toBe(ETH_LEN + (dst === REMOTE4 ? 20 : 40) + 20)
      expect([d.ethDst, d.ethSrc]).toEqual([pkt.subarray(6, 12), pkt.subarray(0, 6)])
      expect(d).toMatchObject({proto: 6, ttl: 64, ipChecksumOk: true, l4ChecksumOk: true})
      expect(d.src.equals(addrBytes(dst)) && d.dst.equals(addrBytes(dst === REMOTE4 ? LOCAL4 : LOCAL6)), 'from the original destination').toBe(true)
      expect([d.l4.readUInt16BE(0), d.l4.readUInt16BE(2)]).toEqual([80, 40000])
      expect(d.l4.readUInt32BE(8), 'acknowledges the SYN').toBe(7778)
      expect(d.l4[13]).toBe(TCP_RST | TCP_ACK)
    }
    for (const dst of [REMOTE4, REMOTE6]) {
      const pkt = datagram(dst)
      const r = await run(egress, pkt)
      expect(r.retval, dst).toBe(TC_ACT_REDIRECT)
      const d = decode(r.out)
      expect(d).toMatchObject({proto: dst === REMOTE4 ? 1 : 58, ttl: 64, ipChecksumOk: true, l4ChecksumOk: true})
      expect(d.src.equals(addrBytes(dst)), 'from the original destination').toBe(true)
      // destination unreachable / port unreachable, quoting the datagram's IP header and 8 bytes
      expect([d.l4[0], d.l4[1]]).toEqual(dst === REMOTE4 ? [3, 3] : [1, 4])
      const ipLen = dst === REMOTE4 ? 20 : 40
      expect(d.l4.subarray(8).equals(pkt.subarray(ETH_LEN, ETH_LEN + ipLen + 8)), 'the quote').toBe(true)
    }
    expect((await status(sb.name)).counters.tcNoListener).toBeGreaterThanOrEqual(2)
  })

  it('the other --proxy-down modes: fail-closed drops, pass lets the SYN out as it was', async () => {
    for (const [mode, want] of [['fail-closed', TC_ACT_SHOT], ['pass', TC_ACT_OK]] as const) {
      const up = await skfp(interceptArgs(sb, host, ['--bypass', '198.18.9.0/24', '--proxy-down', mode, '--replace']))
      expect(up.exitCode, up.stderr).toBe(0)
      for (const pkt of [syn(REMOTE4), datagram(REMOTE6)]) {
        const r = await run(egress, pkt)
        expect(r.retval, mode).toBe(want)
        expect(r.out.equals(pkt)).toBe(true)
      }
    }
  })
})
