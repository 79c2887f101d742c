/**
 * Where the scenarios run, all inside the bench sandbox. Loopback: one namespace. Proxy: a "host"
 * namespace (the client and the proxy, like a machine's own apps and its local proxy) with an
 * uplink veth to a "remote" namespace (the servers). Addresses from 198.18.0.0/15 only.
 */
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {PROJECT_ROOT, programPath} from '../build.js'
import {resolveTool} from '../exec.js'
import {waitForOutput} from '../iperf.js'
import type {Sandbox} from '../sandbox.js'

export const UPLINK = 'up0'
export const HOST_ADDR = '198.18.0.1'
export const REMOTE_ADDR = '198.18.0.2'
export const PROXY_PORT = 7070
/** SO_MARK of the proxy's upstream connections (never intercepted, never accelerated). */
export const PROXY_MARK = 0x100
/** Mark of intercepted packets and the policy-routing table that delivers them locally. */
export const FWMARK = 0x1
export const TABLE = 100

/** The host's LAN interface (--lan) and its client namespace's addresses. */
export const LAN_IFACE = 'lan0'
export const LAN_HOST_ADDR = '198.19.0.1'
export const LAN_CLIENT_ADDR = '198.19.0.2'

export interface ProxyTopology {
  host: string
  remote: string
  /** A LAN client routed by the host (lanClient()). */
  lan?: string
}

export async function proxyTopology(sb: Sandbox, tag: string): Promise<ProxyTopology> {
  const host = await sb.addNetns(`${tag}-h`)
  const remote = await sb.addNetns(`${tag}-r`)
  await sb.link({netns: host, dev: UPLINK, addrs: [`${HOST_ADDR}/24`]}, {netns: remote, dev: 'dn0', addrs: [`${REMOTE_ADDR}/24`]})
  return {host, remote}
}

/** A LAN client namespace behind the host (the host routes it, without NAT, like a router's LAN). */
export async function lanClient(sb: Sandbox, topo: ProxyTopology, tag: string): Promise<ProxyTopology> {
  const lan = await sb.addNetns(`${tag}-l`)
  await sb.link({netns: topo.host, dev: LAN_IFACE, addrs: [`${LAN_HOST_ADDR}/24`]}, {netns: lan, dev: 'eth0', addrs: [`${LAN_CLIENT_ADDR}/24`]})
  await sb.cmd(lan, ['route', 'add', 'default', 'via', LAN_HOST_ADDR])
  await sb.runner.run({tool: 'sysctl', args: ['-qw', 'net.ipv4.ip_forward=1'], netns: topo.host})
  return {...topo, lan}
}

/**
 * The classic TPROXY recipe inside the host namespace. The host's own traffic: OUTPUT marks what goes
 * to the remote (not the proxy's own marked upstream), policy routing turns marked packets back into
 * lo, and PREROUTING's TPROXY hands them to the proxy. A LAN (lan: its interface): PREROUTING's TPROXY
 * takes what comes in there for the remote at once.
 */
export async function iptablesTproxy(sb: Sandbox, ns: string, dst: string, opts: {protos?: ('tcp' | 'udp')[]; lan?: string} = {}): Promise<void> {
  const mark = (n: number) => `0x${n.toString(16)}`
  await sb.cmd(ns, ['-4', 'rule', 'add', 'fwmark', mark(FWMARK), 'lookup', String(TABLE)])
  await sb.cmd(ns, ['-4', 'route', 'add', 'local', 'default', 'dev', 'lo', 'table', String(TABLE)])
  const iptables = (args: string[]) => sb.run(ns, [resolveTool('iptables'), '-w', '-t', 'mangle', ...args], {outsideCgroup: true})
  const tproxy = ['-j', 'TPROXY', '--on-ip', '127.0.0.1', '--on-port', String(PROXY_PORT), '--tproxy-mark', mark(FWMARK)]
  for (const p of opts.protos ?? ['tcp']) {
    if (opts.lan) {
      await iptables(['-A', 'PREROUTING', '-i', opts.lan, '-p', p, '-d', dst, ...tproxy])
      continue
    }
    await iptables(['-A', 'OUTPUT', '-p', p, '-m', 'mark', '--mark', mark(PROXY_MARK), '-j', 'RETURN'])
    await iptables(['-A', 'OUTPUT', '-p', p, '-d', dst, '-j', 'MARK', '--set-mark', mark(FWMARK)])
    await iptables(['-A', 'PREROUTING', '-p', p, '-m', 'mark', '--mark', mark(FWMARK), ...tproxy])
  }
}

export interface Proxy {
  pid: number
  /** Stops it (once, however often called); the upstream connections it could not make (errors). */
  stop(): Promise<number>
}

const once = <T>(f: () => Promise<T>): (() => Promise<T>) => {
  let done: Promise<T> | undefined
  return () => (done ??= f())
}

/** build/bin/skfp-relay: read()/send() copy loop, IP_TRANSPARENT listener, SO_MARK upstream. */
export async function startRelay(sb: Sandbox, ns: string): Promise<Proxy> {
  const child = sb.start(ns, [programPath('skfp-relay'), '--listen', `127.0.0.1:${PROXY_PORT}`, '--mark', `0x${PROXY_MARK.toString(16)}`])
  await waitForOutput(child, /listening/)
  return {
    pid: child.pid!,
    stop: once(async () => {
      child.kill('SIGTERM')
      const r = await child
      const summary = String(r.stderr ?? '').trim().split('\n').pop() ?? ''
      try {
        return JSON.parse(summary).upstreamFailed ?? 0
      } catch {
        return 1 // no summary: it did not stop cleanly
      }
    }),
  }
}

/** templates/v2ray.json (dokodemo-door with tproxy, freedom with the mark), filled in. */
function v2rayConfig(): string {
  const values: Record<string, string> = {proxyAddr4: '127.0.0.1', proxyAddr6: '::1', proxyPort: String(PROXY_PORT), proxyMark: String(PROXY_MARK)}
  return readFileSync(join(PROJECT_ROOT, 'templates', 'v2ray.json'), 'utf8').replace(/\{\{(\w+)\}\}/g, (_, k: string) => values[k] ?? '')
}

/** Debian's v2ray (Go), listening where skfp-relay would. */
/** accessLog: a file for v2ray's access log (one line per connection, with its original destination). */
export async function startV2ray(sb: Sandbox, ns: string, workDir: string, accessLog?: string): Promise<Proxy> {
  const config = join(workDir, 'v2ray.json')
  const json = JSON.parse(v2rayConfig())
  if (accessLog) json.log = {access: accessLog, loglevel: 'warning'}
  writeFileSync(config, JSON.stringify(json))
  const child = sb.start(ns, [resolveTool('v2ray'), '-config', config])
  await waitForOutput(child, /started/)
  return {
    pid: child.pid!,
    stop: once(async () => {
      child.kill('SIGTERM')
      await child
      return 0
    }),
  }
}
