// Traffic the host forwards (a container behind a NAT bridge, as Docker and Podman set it up, and a
// routed namespace without NAT) passes the uplink untouched while interception is up, IPv4 and IPv6;
// the host's own connections are still intercepted.
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {resolveTool} from '../../src/lib/exec.js'
import {waitForOutput} from '../../src/lib/iperf.js'
import type {Sandbox} from '../../src/lib/sandbox.js'
import {expectedSha} from '../fixtures/transfer.mjs'
import {FIXTURE, runner, skfp, status, transfer, withSandbox} from './helpers.js'
import {expectRestored, hostSnapshot} from './snapshot.js'
import {curl, enableForwarding, interceptArgs, proxyTopology, REMOTE4, REMOTE6, startHttp, startV2ray} from './topology.js'

const MiB = 1024 * 1024

/** The proxy topology (topology.ts) with the host forwarding, v4 and v6. */
async function forwardingTopology(sb: Sandbox) {
  const t = await proxyTopology(sb)
  await enableForwarding(sb, t.host)
  return t
}

/** The host's bridge br0 (198.18.4.1/24, fd00:4::1/64), up. */
async function addBridge(sb: Sandbox, host: string): Promise<void> {
  await sb.cmd(host, ['link', 'add', 'br0', 'type', 'bridge'])
  await runner.run({tool: 'sysctl', args: ['-qw', 'net.ipv6.conf.br0.accept_dad=0'], netns: host})
  await sb.cmd(host, ['addr', 'add', '198.18.4.1/24', 'dev', 'br0'])
  await sb.cmd(host, ['-6', 'addr', 'add', 'fd00:4::1/64', 'dev', 'br0', 'nodad'])
  await sb.cmd(host, ['link', 'set', 'br0', 'up'])
}

/** A "container" namespace on a bridge br0 of the host, masqueraded on the uplink (Docker's rule). */
async function natContainer(sb: Sandbox, host: string): Promise<string> {
  const c = await sb.addNetns('c')
  await addBridge(sb, host)
  await sb.link({netns: host, dev: 'vc0', addrs: []}, {netns: c, dev: 'eth0', addrs: ['198.18.4.2/24', 'fd00:4::2/64']})
  await sb.cmd(host, ['link', 'set', 'vc0', 'master', 'br0'])
  // the bridge's link-local address comes with its first port's carrier: wait for it, so that a
  // snapshot taken now is the settled host
  for (let i = 0; !(await sb.cmd(host, ['-6', 'addr', 'show', 'dev', 'br0', 'scope', 'link'])).stdout.includes('fe80'); i++) {
    if (i > 100) throw new Error('br0 has no link-local address')
    await new Promise((r) => setTimeout(r, 20))
  }
  await sb.cmd(c, ['route', 'add', 'default', 'via', '198.18.4.1'])
  await sb.cmd(c, ['-6', 'route', 'add', 'default', 'via', 'fd00:4::1'])
  for (const [tool, src] of [['iptables', '198.18.4.0/24'], ['ip6tables', 'fd00:4::/64']] as const)
    await runner.run({tool, args: ['-t', 'nat', '-A', 'POSTROUTING', '-s', src, '!', '-o', 'br0', '-j', 'MASQUERADE'], netns: host})
  return c
}

/** A namespace routed by the host without NAT (a VM or a LAN client): the remote routes back to it. */
async function routedNeighbour(sb: Sandbox, host: string, remote: string): Promise<string> {
  const n = await sb.addNetns('n')
  await sb.link({netns: host, dev: 'vn0', addrs: ['198.18.5.1/30', 'fd00:5::1/64']}, {netns: n, dev: 'eth0', addrs: ['198.18.5.2/30', 'fd00:5::2/64']})
  await sb.cmd(n, ['route', 'add', 'default', 'via', '198.18.5.1'])
  await sb.cmd(n, ['-6', 'route', 'add', 'default', 'via', 'fd00:5::1'])
  await sb.cmd(remote, ['route', 'add', '198.18.5.0/30', 'via', '198.18.0.1'])
  await sb.cmd(remote, ['-6', 'route', 'add', 'fd00:5::/64', 'via', 'fd00:18::1'])
  return n
}

async function remoteTransferServer(sb: Sandbox, remote: string, addr: string, port: number, bytes: number, seed: string) {
  const server = sb.start(remote, [process.execPath, FIXTURE, 'server', '--addr', addr, '--port', String(port), '--bytes', String(bytes), '--seed', seed], {outsideCgroup: true})
  await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()))
  return async () => JSON.parse(String((await server).stdout).trim().split('\n').pop()!)
}

describe('forwarded traffic while interception is up', () => {
  it('a container behind a NAT bridge and a routed neighbour keep their TCP, v4 and v6; the host itself is still intercepted', async () => {
    await withSandbox('fw', async (sb) => {
      const {host, remote} = await forwardingTopology(sb)
      const c = await natContainer(sb, host)
      const n = await routedNeighbour(sb, host, remote)
      const up = await skfp(interceptArgs(sb, host))
      expect(up.exitCode, up.stderr).toBe(0)
      const {log} = await startV2ray(sb, host)
      await startHttp(sb, remote)

      let port = 9100
      for (const client of [c, n]) {
        for (const url of [`http://${REMOTE4}:8080/`, `http://[${REMOTE6}]:8080/`]) expect((await curl(sb, client, url)).stdout, `${client} ${url}`).toBe('200')
        for (const addr of [REMOTE4, REMOTE6]) {
          const seed = `fw-${port}`
          const done = await remoteTransferServer(sb, remote, addr, port, 8 * MiB, seed)
          const r = await transfer(sb, client, ['client', '--addr', addr, '--port', String(port), '--bytes', String(8 * MiB), '--seed', seed])
          expect(r.clientReceivedSha).toBe(expectedSha(`${seed}-down`, 8 * MiB))
          expect((await done()).serverReceivedSha).toBe(expectedSha(`${seed}-up`, 8 * MiB))
          port++
        }
      }
      const forwarded = await status(sb.name)
      expect(forwarded.counters.tcForwarded).toBeGreaterThan(0)
      expect(forwarded.counters.tcAssignedListener).toBe(0)
      expect(readFileSync(log, 'utf8')).toBe('') // the proxy saw none of it

      // the host's own connection still goes to the proxy
      expect((await curl(sb, host, `http://${REMOTE4}:8080/`)).stdout).toBe('200')
      expect((await status(sb.name)).counters.tcAssignedListener).toBe(1)
      expect(readFileSync(log, 'utf8')).toContain(`tcp:${REMOTE4}:8080`)
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      expect((await curl(sb, c, `http://${REMOTE4}:8080/`)).stdout).toBe('200')
    })
  })
})

const UDP = join(PROJECT_ROOT, 'test', 'fixtures', 'udp.py')

describe('--lan: LAN clients and containers through the proxy', () => {
  it('a container behind a NAT bridge goes through the proxy with its own address (TCP and UDP, v4 and v6); the gateway itself and proxy-down stay right; down restores the host', async () => {
    await withSandbox('ln', async (sb) => {
      const {host, remote} = await forwardingTopology(sb)
      const c = await natContainer(sb, host)
      const before = await hostSnapshot([host], sb.cgroup)
      const up = await skfp(interceptArgs(sb, host, ['--lan', 'br0']))
      expect(up.exitCode, up.stderr).toBe(0)
      const {child: v2ray, log} = await startV2ray(sb, host)
      await startHttp(sb, remote)
      for (const url of [`http://${REMOTE4}:8080/`, `http://[${REMOTE6}]:8080/`]) expect((await curl(sb, c, url)).stdout, url).toBe('200')
      for (const addr of [REMOTE4, REMOTE6]) {
        const echo = sb.start(remote, [resolveTool('python3'), '-u', UDP, 'echo', '--addr', addr, '--port', '5300'], {outsideCgroup: true})
        await waitForOutput(echo, /listening/)
        const r = JSON.parse((await sb.run(c, [resolveTool('python3'), UDP, 'client', '--addr', addr, '--port', '5300', '--count', '20'])).stdout)
        expect(r, addr).toMatchObject({received: 20, corrupt: 0, error: null})
      }
      // the proxy saw the container's own address, before the uplink's masquerade
      const accessLog = readFileSync(log, 'utf8')
      for (const line of [`198.18.4.2:`, `accepted tcp:${REMOTE4}:8080`, `[fd00:4::2]:`, `accepted tcp:[${REMOTE6}]:8080`, `accepted udp:${REMOTE4}:5300`, `accepted udp:[${REMOTE6}]:5300`])
        expect(accessLog).toContain(line)
      expect(accessLog.split('\n').filter((l) => l.includes('accepted')).every((l) => /^\S+ \S+ (198\.18\.4\.2|\[fd00:4::2\]):/.test(l)), accessLog).toBe(true)

      // the gateway's own resolver, asked on its bridge address, answers itself
      const dns = sb.start(host, [resolveTool('dnsmasq'), '--keep-in-foreground', '--no-resolv', '--no-hosts', '--conf-file=/dev/null', '--pid-file=', '--user=root', '--bind-interfaces', '--listen-address=198.18.4.1', '--listen-address=fd00:4::1', '--address=/skfp.test/198.19.7.7', '--log-facility=-'])
      await waitForOutput({stdout: dns.stderr}, /started, version/)
      for (const server of ['198.18.4.1', 'fd00:4::1'])
        expect((await sb.run(c, [resolveTool('dig'), `@${server}`, 'skfp.test', 'A', '+short', '+tries=1', '+time=3'])).stdout.trim(), server).toBe('198.19.7.7')
      expect(readFileSync(log, 'utf8')).not.toMatch(/accepted udp:\S+:53 /)
      // and the host's own traffic is still intercepted on the uplink
      expect((await curl(sb, host, `http://${REMOTE4}:8080/`)).stdout).toBe('200')
      const st = await status(sb.name)
      expect(st.intercept.lan).toEqual([{dev: 'br0', attached: true}])
      expect(st.counters.lanAssigned).toBeGreaterThan(40)
      expect(st.counters.lanDirect).toBeGreaterThan(0)
      expect(st.counters.tcAssignedListener).toBeGreaterThanOrEqual(3) // two from the container, one from the host

      // the proxy goes away: fail-fast answers the container at once, TCP and UDP
      v2ray.kill('SIGTERM')
      await v2ray.catch(() => {})
      const t0 = Date.now()
      expect((await curl(sb, c, `http://${REMOTE4}:8080/`)).stdout).toBe('000')
      const refused = JSON.parse((await sb.run(c, [resolveTool('python3'), UDP, 'client', '--addr', REMOTE6, '--port', '5300', '--timeout', '2'])).stdout)
      expect(refused.error).toBe('ECONNREFUSED')
      expect(Date.now() - t0).toBeLessThan(1500)
      expect((await status(sb.name)).counters.lanNoProxy).toBeGreaterThanOrEqual(2)

      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      await expectRestored(before, [host], sb.cgroup)
      expect((await curl(sb, c, `http://${REMOTE4}:8080/`)).stdout).toBe('200') // direct again
    })
  })
})

describe('--lan: the bridge deleted and created again (a container runtime restarting it)', () => {
  it('while the bridge is gone the instance is half up naming its filter and up refuses; once it is back, up puts the filter back and the container goes through the proxy again', async () => {
    await withSandbox('lb', async (sb) => {
      const {host, remote} = await forwardingTopology(sb)
      const c = await natContainer(sb, host)
      const args = interceptArgs(sb, host, ['--lan', 'br0'])
      expect((await skfp(args)).exitCode).toBe(0)
      const {log} = await startV2ray(sb, host)
      await startHttp(sb, remote)
      const viaProxy = () => readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(`198.18.4.2:`) && l.includes(`accepted tcp:${REMOTE4}:8080`)).length
      expect((await curl(sb, c, `http://${REMOTE4}:8080/`)).stdout).toBe('200')
      expect(viaProxy()).toBe(1)

      await sb.cmd(host, ['link', 'del', 'br0'])
      const half = await status(sb.name)
      expect(half.state).toBe('half-up')
      expect(half.problems).toEqual(['the clsact qdisc of br0 is missing', 'tc filter on br0 ingress is missing'])
      expect(half.intercept.lan).toEqual([{dev: 'br0', attached: false}])
      const refused = await skfp(args)
      expect(refused.exitCode).toBe(4)
      expect(refused.stderr.trim()).toBe(`skfp: instance ${sb.name} is half up: the clsact qdisc of br0 is missing; tc filter on br0 ingress is missing: run \`skfp down --instance ${sb.name}\` first (it removes what is left: of a crash, an interrupted run, or changes removed under it), or up again with --replace`)

      // an interface of that name that is no Ethernet one (a tun device) does not take the filter back
      await sb.cmd(host, ['tuntap', 'add', 'br0', 'mode', 'tun'])
      expect((await skfp(args)).stderr.trim()).toBe(refused.stderr.trim())
      await sb.cmd(host, ['link', 'del', 'br0'])
      // it comes back with the same name and address; the container's port joins it again
      await addBridge(sb, host)
      await sb.cmd(host, ['link', 'set', 'vc0', 'master', 'br0'])
      // meanwhile its connections go direct (forwarded and masqueraded): nothing watches for the bridge
      expect((await curl(sb, c, `http://${REMOTE4}:8080/`)).stdout).toBe('200')
      expect(viaProxy(), 'not through the proxy while its filter is gone').toBe(1)

      const before = await status(sb.name)
      const again = await skfp(args)
      expect(again.json, again.stderr).toMatchObject({action: 'repaired'})
      expect(again.json.plan.map((p: {id: string}) => p.id)).toEqual(['hold', 'qdisc-br0', 'tc-filter-br0-ingress', 'release'])
      const st = await status(sb.name)
      expect(st).toMatchObject({state: 'up', problems: [], changingBy: null})
      expect(st.intercept.lan).toEqual([{dev: 'br0', attached: true}])
      expect(st.programs, 'nothing else was touched').toEqual(before.programs)
      expect((await curl(sb, c, `http://${REMOTE4}:8080/`)).stdout).toBe('200')
      expect(viaProxy(), 'the container goes through the proxy again').toBe(2)
      expect((await skfp(args)).json.action).toBe('unchanged')
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      expect((await status(sb.name)).state).toBe('down')
    })
  })
})

describe('coexistence with the host firewall and other policy routing', () => {
  it("Docker's NAT and filter rules and another program's fwmark rule keep working through up and down, untouched", async () => {
    await withSandbox('dk', async (sb) => {
      const {host, remote} = await forwardingTopology(sb)
      const c = await natContainer(sb, host)
      // Docker's filter rules: FORWARD dropped but for the bridge's own traffic and its answers
      for (const tool of ['iptables', 'ip6tables'] as const)
        for (const rule of [['-P', 'FORWARD', 'DROP'], ['-A', 'FORWARD', '-i', 'br0', '-j', 'ACCEPT'], ['-A', 'FORWARD', '-o', 'br0', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']])
          await runner.run({tool, args: rule, netns: host})
      // another program's policy routing: its mark (0x1/0x1) on the host's connections to :8082 routes them by its own table
      await sb.cmd(host, ['rule', 'add', 'fwmark', '0x1/0x1', 'lookup', '100', 'pref', '100'])
      await sb.cmd(host, ['route', 'add', `${REMOTE4}/32`, 'via', '198.18.0.2', 'dev', 'up0', 'table', '100'])
      await runner.run({tool: 'iptables', args: ['-t', 'mangle', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '8082', '-j', 'MARK', '--set-xmark', '0x1/0x1'], netns: host})
      // -s: without the counters, which the traffic moves
      const nftBefore = (await runner.run({tool: 'nft', args: ['-s', 'list', 'ruleset'], netns: host})).stdout
      const before = await hostSnapshot([host], sb.cgroup)

      const up = await skfp(interceptArgs(sb, host, ['--lan', 'br0', '--bypass-port', '8082']))
      expect(up.exitCode, up.stderr).toBe(0)
      const {log} = await startV2ray(sb, host)
      await startHttp(sb, remote, 8080)
      await startHttp(sb, remote, 8082)
      expect((await curl(sb, c, `http://${REMOTE4}:8080/`)).stdout).toBe('200') // the container, through the proxy
      expect((await curl(sb, host, `http://${REMOTE4}:8080/`)).stdout).toBe('200') // the host, through the proxy
      expect((await curl(sb, host, `http://${REMOTE4}:8082/`)).stdout).toBe('200') // the other program's marked route
      expect((await curl(sb, c, `http://${REMOTE4}:8082/`)).stdout).toBe('200') // forwarded and masqueraded, as before
      const accessLog = readFileSync(log, 'utf8')
      expect(accessLog).toContain(`198.18.4.2:`)
      expect(accessLog).not.toContain(':8082')
      // skfp's rule matches its own mark exactly (no mask), beside the other one
      const rules = JSON.parse((await sb.cmd(host, ['-j', '-4', 'rule', 'show'])).stdout) as {priority: number; fwmark?: string; fwmask?: string}[]
      expect(rules.find((r) => r.priority === 1487)).toMatchObject({fwmark: '0x5cf0'})
      expect(rules.find((r) => r.priority === 1487)?.fwmask).toBeUndefined()
      expect(rules.find((r) => r.priority === 100)).toMatchObject({fwmark: '0x1', fwmask: '0x1'})
      expect((await runner.run({tool: 'nft', args: ['-s', 'list', 'ruleset'], netns: host})).stdout).toBe(nftBefore) // skfp adds no firewall rule

      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      await expectRestored(before, [host], sb.cgroup)
      expect((await runner.run({tool: 'nft', args: ['-s', 'list', 'ruleset'], netns: host})).stdout).toBe(nftBefore)
      for (const client of [c, host]) expect((await curl(sb, client, `http://${REMOTE4}:8082/`)).stdout).toBe('200')
    })
  })
})
