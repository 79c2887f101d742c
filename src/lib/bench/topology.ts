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

export interface ProxyTopology {
  host: string
  remote: string
}

export async function proxyTopology(sb: Sandbox, tag: string): Promise<ProxyTopology> {
  const host = await sb.addNetns(`${tag}-h`)
  const remote = await sb.addNetns(`${tag}-r`)
  await sb.link({netns: host, dev: UPLINK, addrs: [`${HOST_ADDR}/24`]}, {netns: remote, dev: 'dn0', addrs: [`${REMOTE_ADDR}/24`]})
  return {host, remote}
}

/**
 * The classic TPROXY recipe for a host's own outgoing traffic, inside the host namespace: OUTPUT
 * marks TCP to the remote (not the proxy's own marked upstream), policy routing turns marked
 * packets back into lo, and PREROUTING's TPROXY hands them to the proxy's listener.
 */
export async function iptablesTproxy(sb: Sandbox, ns: string, dst: string): Promise<void> {
  const mark = (n: number) => `0x${n.toString(16)}`
  await sb.cmd(ns, ['-4', 'rule', 'add', 'fwmark', mark(FWMARK), 'lookup', String(TABLE)])
  await sb.cmd(ns, ['-4', 'route', 'add', 'local', 'default', 'dev', 'lo', 'table', String(TABLE)])
  const iptables = (args: string[]) => sb.run(ns, [resolveTool('iptables'), '-w', '-t', 'mangle', ...args], {outsideCgroup: true})
  await iptables(['-A', 'OUTPUT', '-p', 'tcp', '-m', 'mark', '--mark', mark(PROXY_MARK), '-j', 'RETURN'])
  await iptables(['-A', 'OUTPUT', '-p', 'tcp', '-d', dst, '-j', 'MARK', '--set-mark', mark(FWMARK)])
  await iptables(['-A', 'PREROUTING', '-p', 'tcp', '-m', 'mark', '--mark', mark(FWMARK), '-j', 'TPROXY', '--on-ip', '127.0.0.1', '--on-port', String(PROXY_PORT), '--tproxy-mark', mark(FWMARK)])
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
export async function startV2ray(sb: Sandbox, ns: string, workDir: string): Promise<Proxy> {
  const config = join(workDir, 'v2ray.json')
  writeFileSync(config, v2rayConfig())
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
