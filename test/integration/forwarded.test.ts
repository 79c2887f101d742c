// Traffic the host forwards (a container behind a NAT bridge, as Docker and Podman set it up, and a
// routed namespace without NAT) passes the uplink untouched while interception is up, IPv4 and IPv6;
// the host's own connections are still intercepted.
import {readFileSync} from 'node:fs'
import {describe, expect, it} from 'vitest'
import type {Sandbox} from '../../src/lib/sandbox.js'
import {expectedSha} from '../fixtures/transfer.mjs'
import {FIXTURE, runner, skfp, status, transfer, withSandbox} from './helpers.js'
import {curl, interceptArgs, proxyTopology, REMOTE4, REMOTE6, startHttp, startV2ray} from './topology.js'

const MiB = 1024 * 1024

/** A "container" namespace on a bridge br0 of the host, masqueraded on the uplink (Docker's rule). */
async function natContainer(sb: Sandbox, host: string): Promise<string> {
  const c = await sb.addNetns('c')
  await sb.cmd(host, ['link', 'add', 'br0', 'type', 'bridge'])
  await sb.cmd(host, ['addr', 'add', '198.18.4.1/24', 'dev', 'br0'])
  await sb.cmd(host, ['-6', 'addr', 'add', 'fd00:4::1/64', 'dev', 'br0', 'nodad'])
  await sb.cmd(host, ['link', 'set', 'br0', 'up'])
  await sb.link({netns: host, dev: 'vc0', addrs: []}, {netns: c, dev: 'eth0', addrs: ['198.18.4.2/24', 'fd00:4::2/64']})
  await sb.cmd(host, ['link', 'set', 'vc0', 'master', 'br0'])
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
      const {host, remote} = await proxyTopology(sb)
      for (const key of ['net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding']) await runner.run({tool: 'sysctl', args: ['-qw', `${key}=1`], netns: host})
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
