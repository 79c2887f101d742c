/** A host netns whose uplink (veth up0) leads to a remote netns; the remote's service addresses
 * (198.19.1.1, 2001:2::1) are reachable only through the uplink, like the internet. */
import {generateKeyPairSync} from 'node:crypto'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {resolveTool} from '../../src/lib/exec.js'
import {waitForOutput} from '../../src/lib/iperf.js'
import type {Sandbox} from '../../src/lib/sandbox.js'

export const REMOTE4 = '198.19.1.1'
export const REMOTE6 = '2001:2::1'
export const PROXY_PORT = 7893
export const PROXY_MARK = 255

/** Waits until something in netns listens on UDP (unconnected socket) or TCP port: for programs that
 * say so only in block-buffered output. */
export async function waitForListener(sb: Sandbox, netns: string, port: number, proto: 'tcp' | 'udp', count = 1): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const r = await sb.runner.run({tool: 'ss', args: [proto === 'udp' ? '-Hlun' : '-Hltn', 'sport', '=', `:${port}`], netns})
    if (r.stdout.trim().split('\n').filter(Boolean).length >= count) return
    await new Promise((res) => setTimeout(res, 20))
  }
  throw new Error(`nothing listens on ${proto} port ${port} in ${netns}`)
}

export async function proxyTopology(sb: Sandbox): Promise<{host: string; remote: string}> {
  const host = await sb.addNetns('h')
  const remote = await sb.addNetns('r')
  await addUplink(sb, host, remote, 'up0', ['198.18.0.1', 'fd00:18::1'], ['198.18.0.2', 'fd00:18::2'])
  await sb.cmd(host, ['route', 'add', 'default', 'via', '198.18.0.2'])
  await sb.cmd(host, ['-6', 'route', 'add', 'default', 'via', 'fd00:18::2'])
  await sb.cmd(remote, ['addr', 'add', `${REMOTE4}/32`, 'dev', 'lo'])
  await sb.cmd(remote, ['-6', 'addr', 'add', `${REMOTE6}/128`, 'dev', 'lo'])
  return {host, remote}
}

/** A veth dev between host and remote: a /30 and a /64 ([v4, v6] of each end), neighbours fixed up
 * front (neighbour discovery on a brand-new veth can take a second, which would show up as a SYN
 * retransmit in the timing tests). */
export async function addUplink(sb: Sandbox, host: string, remote: string, dev: string, hostAddrs: [string, string], remoteAddrs: [string, string]): Promise<void> {
  await sb.link({netns: host, dev, addrs: [`${hostAddrs[0]}/30`, `${hostAddrs[1]}/64`]}, {netns: remote, dev, addrs: [`${remoteAddrs[0]}/30`, `${remoteAddrs[1]}/64`]})
  const mac = async (ns: string) => JSON.parse((await sb.cmd(ns, ['-j', 'link', 'show', dev])).stdout)[0].address
  const [hostMac, remoteMac] = [await mac(host), await mac(remote)]
  for (const gw of remoteAddrs) await sb.cmd(host, ['neigh', 'replace', gw, 'lladdr', remoteMac, 'dev', dev, 'nud', 'permanent'])
  for (const h of hostAddrs) await sb.cmd(remote, ['neigh', 'replace', h, 'lladdr', hostMac, 'dev', dev, 'nud', 'permanent'])
}

export function interceptArgs(sb: Sandbox, host: string, extra: string[] = []): string[] {
  return ['up', '--instance', sb.name, '--netns', host, '--cgroup', sb.cgroup, '--fastpath', 'off', '--proxy-port', String(PROXY_PORT), '--proxy-mark', String(PROXY_MARK), '--json', ...extra]
}

/** v2ray from templates/v2ray.json, with an access log, inside the host netns and the cgroup. */
export async function startV2ray(sb: Sandbox, host: string): Promise<{child: ReturnType<Sandbox['start']>; log: string}> {
  const log = sb.file('v2ray-access.log')
  const config = JSON.parse(
    readFileSync(join(PROJECT_ROOT, 'templates', 'v2ray.json'), 'utf8')
      .replaceAll('{{proxyPort}}', String(PROXY_PORT))
      .replaceAll('{{proxyMark}}', String(PROXY_MARK))
      .replaceAll('{{proxyAddr4}}', '127.0.0.1')
      .replaceAll('{{proxyAddr6}}', '::1'),
  )
  config.log = {access: log, loglevel: 'warning'}
  const file = sb.file('v2ray.json')
  writeFileSync(file, JSON.stringify(config))
  writeFileSync(log, '')
  const child = sb.start(host, [resolveTool('v2ray'), '-config', file])
  await waitForOutput(child, /started/, 60_000) // seconds in an emulated VM
  return {child, log}
}

/** The host routes for others (a router, a VPN server), v4 and v6. */
export async function enableForwarding(sb: Sandbox, host: string): Promise<void> {
  for (const key of ['net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding']) await sb.runner.run({tool: 'sysctl', args: ['-qw', `${key}=1`], netns: host})
}

/** One end of a tunnel: its netns, the tun device's addresses ([v4/len, v6/len]) and the underlay
 * address its UDP leaves from. */
export interface TunnelEnd {
  netns: string
  addrs: [string, string]
  under: string
  /** the mark of the tunnel's own packets: socat's SO_MARK, WireGuard's fwmark */
  mark?: number
}

/** A VPN's tunnel between two namespaces: a tun device dev at each end (no link-layer header: link
 * type none), its packets carried one per UDP datagram between the underlay addresses by socat, as a
 * userspace VPN (OpenVPN) carries them. MTU 1400: a full packet's datagram still fits the underlay. */
export async function tunnel(sb: Sandbox, a: TunnelEnd, b: TunnelEnd, dev: string, port: number): Promise<void> {
  for (const [me, peer] of [[a, b], [b, a]] as const) {
    // -d -d: socat says when both ends are open (the tun device made and up)
    const socat = sb.start(me.netns, [resolveTool('socat'), '-d', '-d', `TUN:${me.addrs[0]},tun-name=${dev},tun-type=tun,iff-no-pi,iff-up`, `UDP-DATAGRAM:${peer.under}:${port},bind=${me.under}:${port}${me.mark ? `,setsockopt-int=1:36:${me.mark}` : ''}`], {outsideCgroup: true})
    let ready = false
    const started = waitForOutput({stdout: socat.stderr}, /starting data transfer loop/, 60_000)
    started.catch(() => {}) // a socat that ended first says why below
    const ended = socat.then((r) => {
      if (!ready) throw new Error(`socat made no ${dev} in ${me.netns} (exit ${r.exitCode}): ${String(r.stderr).trim().split('\n').pop()}`)
    })
    await Promise.race([started, ended])
    ready = true
    await sb.cmd(me.netns, ['link', 'set', dev, 'mtu', '1400'])
    await sb.cmd(me.netns, ['-6', 'addr', 'add', me.addrs[1], 'dev', dev, 'nodad'])
  }
}

/** A WireGuard tunnel between two namespaces: a wireguard device dev at each end (link type none),
 * each the other's one peer for every address, over the underlay addresses. Keys made here (x25519,
 * as `wg genkey` makes them); `wg` sets them. */
export async function wireguard(sb: Sandbox, a: TunnelEnd, b: TunnelEnd, dev: string, port: number): Promise<void> {
  const b64 = (jwk: string | undefined) => Buffer.from(jwk!, 'base64url').toString('base64')
  const keys = [a, b].map(() => {
    const {privateKey, publicKey} = generateKeyPairSync('x25519')
    return {private: b64(privateKey.export({format: 'jwk'}).d), public: b64(publicKey.export({format: 'jwk'}).x)}
  })
  for (const [i, me, peer] of [[0, a, b], [1, b, a]] as const) {
    const keyFile = sb.file(`${dev}-${i}.key`)
    writeFileSync(keyFile, `${keys[i].private}\n`, {mode: 0o600})
    await sb.cmd(me.netns, ['link', 'add', dev, 'type', 'wireguard'])
    const peerKey = keys[1 - i].public
    await sb.run(me.netns, [resolveTool('wg'), 'set', dev, 'private-key', keyFile, 'listen-port', String(port), ...(me.mark ? ['fwmark', String(me.mark)] : []), 'peer', peerKey, 'allowed-ips', '0.0.0.0/0,::/0', 'endpoint', `${peer.under}:${port}`], {outsideCgroup: true})
    await sb.cmd(me.netns, ['addr', 'add', me.addrs[0], 'dev', dev])
    await sb.cmd(me.netns, ['-6', 'addr', 'add', me.addrs[1], 'dev', dev, 'nodad'])
    await sb.cmd(me.netns, ['link', 'set', dev, 'up'])
  }
}

export const UDP = join(PROJECT_ROOT, 'test', 'fixtures', 'udp.py')

export interface UdpRun {
  sent: number
  received: number
  corrupt: number
  lost: number
  lossPct: number
  rttMsP50: number | null
  error: string | null
}

/** An echo server (test/fixtures/udp.py); lines() is every datagram it got so far. */
export async function udpEcho(sb: Sandbox, ns: string, addr: string, port: number, outsideCgroup = true): Promise<{lines: () => {from: [string, number]; ok: boolean}[]}> {
  const child = sb.start(ns, [resolveTool('python3'), '-u', UDP, 'echo', '--addr', addr, '--port', String(port)], {outsideCgroup})
  let out = ''
  child.stdout?.on('data', (d) => (out += String(d)))
  await waitForOutput(child, /listening/)
  return {lines: () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))}
}

export async function udpClient(sb: Sandbox, ns: string, addr: string, port: number, extra: string[] = []): Promise<UdpRun> {
  const r = await sb.run(ns, [resolveTool('python3'), UDP, 'client', '--addr', addr, '--port', String(port), ...extra], {timeoutMs: 60_000})
  return JSON.parse(r.stdout.trim())
}

export const curl = (sb: Sandbox, host: string, url: string, timeoutS = 5, format = '%{http_code}') =>
  sb.run(host, [resolveTool('curl'), '-s', '-o', '/dev/null', '-m', String(timeoutS), '-w', format, url], {allowFailure: true})

export async function startHttp(sb: Sandbox, remote: string, port = 8080): Promise<void> {
  for (const addr of [REMOTE4, REMOTE6]) {
    const child = sb.start(remote, [resolveTool('python3'), '-u', '-m', 'http.server', '--bind', addr, String(port)], {outsideCgroup: true})
    await waitForOutput(child, /Serving HTTP/)
  }
}
