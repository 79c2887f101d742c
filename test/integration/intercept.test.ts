// Transparent-proxy interception through a real proxy (Debian's v2ray), in network namespaces.
import {readFileSync} from 'node:fs'
import {describe, expect, it} from 'vitest'
import {programPath} from '../../src/lib/build.js'
import {expectedSha} from '../fixtures/transfer.mjs'
import {FIXTURE, foreignObject, runner, skfp, status, transfer, withSandbox} from './helpers.js'
import {expectRestored, hostSnapshot} from './snapshot.js'
import {curl, interceptArgs, PROXY_MARK, PROXY_PORT, proxyTopology, REMOTE4, REMOTE6, startHttp, startV2ray} from './topology.js'

const MiB = 1024 * 1024
const BIG = 256 * MiB

/** A transfer server in the remote netns: outside the cgroup (the world) unless inCgroup (a local container). */
async function remoteServer(sb: any, remote: string, addr: string, port: number, bytes: number, seed: string, extra: string[] = [], inCgroup = false) {
  const server = sb.start(remote, [process.execPath, FIXTURE, 'server', '--addr', addr, '--port', String(port), '--bytes', String(bytes), '--seed', seed, ...extra], {outsideCgroup: !inCgroup})
  await new Promise<void>((resolve) => server.stdout.once('data', () => resolve()))
  return async () => JSON.parse(String((await server).stdout).trim().split('\n').pop()!)
}

describe('interception through v2ray', () => {
  it('HTTP and 256 MiB each way over IPv4 and IPv6 reach the original destination through the proxy', async () => {
    await withSandbox('ix', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      const up = await skfp(interceptArgs(sb, host))
      expect(up.exitCode, up.stderr).toBe(0)
      const {log} = await startV2ray(sb, host)
      await startHttp(sb, remote)
      expect((await curl(sb, host, `http://${REMOTE4}:8080/`)).stdout).toBe('200')
      expect((await curl(sb, host, `http://[${REMOTE6}]:8080/`)).stdout).toBe('200')
      // request/response, one direction at a time: v2ray 4.34 has no TCP half-close and cuts the
      // uplink once the downlink ends (skfp-relay passes a simultaneous two-way transfer, below)
      for (const [addr, seed, port] of [[REMOTE4, 'i4', 9001], [REMOTE6, 'i6', 9002]] as const) {
        for (const [up, down] of [[BIG, 64], [64, BIG]]) {
          const sizes = ['--up', String(up), '--down', String(down), '--sequential']
          const done = await remoteServer(sb, remote, addr, port, BIG, seed, sizes)
          const c = await transfer(sb, host, ['client', '--addr', addr, '--port', String(port), '--seed', seed, ...sizes])
          const s = await done()
          expect(s.serverReceived).toBe(up)
          expect(s.serverReceivedSha).toBe(expectedSha(`${seed}-up`, up)) // upload
          expect(c.clientReceived).toBe(down)
          expect(c.clientReceivedSha).toBe(expectedSha(`${seed}-down`, down)) // download
        }
      }
      const accessLog = readFileSync(log, 'utf8')
      for (const dest of [`tcp:${REMOTE4}:8080`, `tcp:[${REMOTE6}]:8080`, `tcp:${REMOTE4}:9001`, `tcp:[${REMOTE6}]:9002`]) expect(accessLog).toContain(dest)
      const st = await status(sb.name)
      expect(st.counters.tcAssignedListener).toBe(6) // six connections handed to v2ray
      expect(st.counters.tcRedirected).toBeGreaterThan(4)
      expect(st.intercept).toMatchObject({uplinks: [{dev: 'up0', attached: true}], loAttached: true, rules: {v4: true, v6: true}, routes: {v4: true, v6: true}})
      expect(st.intercept.proxy.listening).toEqual({v4: true, v6: true})
    })
  })

  it('bypassed CIDRs and ports go direct; the proxy never sees them', async () => {
    await withSandbox('ib', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      const args = interceptArgs(sb, host, ['--bypass', `${REMOTE4}/32`, '--bypass', '2001:2::/48', '--bypass-port', '8081'])
      expect((await skfp(args)).exitCode).toBe(0)
      // up again with the same flags: nothing to do (the recorded settings are compared by value)
      expect((await skfp(args)).json).toMatchObject({action: 'unchanged'})
      // --replace: down and up again all the same (new programs after an upgrade, a cgroup created again)
      expect((await skfp([...args, '--replace'])).json).toMatchObject({action: 'replaced'})
      const other = await skfp(interceptArgs(sb, host, ['--bypass-port', '8081']))
      expect([other.exitCode, other.stderr]).toEqual([4, expect.stringMatching(/other settings \(intercept\.bypass: .*--replace/)])
      const {log} = await startV2ray(sb, host)
      await startHttp(sb, remote, 8080)
      await startHttp(sb, remote, 8081)
      expect((await curl(sb, host, `http://${REMOTE4}:8080/`)).stdout).toBe('200') // CIDR bypass
      expect((await curl(sb, host, `http://[${REMOTE6}]:8080/`)).stdout).toBe('200') // CIDR bypass
      const before = (await status(sb.name)).counters.tcAssignedListener
      expect(before).toBe(0)
      expect(readFileSync(log, 'utf8')).toBe('')
      // a port bypass, on an address that is otherwise intercepted
      const replaced = await skfp(interceptArgs(sb, host, ['--bypass-port', '8081', '--replace']))
      expect(replaced.exitCode, replaced.stderr).toBe(0)
      expect(replaced.json.action).toBe('replaced')
      expect((await curl(sb, host, `http://${REMOTE4}:8081/`)).stdout).toBe('200')
      expect((await status(sb.name)).counters.tcAssignedListener).toBe(0)
      expect((await curl(sb, host, `http://${REMOTE4}:8080/`)).stdout).toBe('200') // and this one is proxied
      expect((await status(sb.name)).counters.tcAssignedListener).toBe(1)
      expect(readFileSync(log, 'utf8')).toContain(`tcp:${REMOTE4}:8080`)
      expect(readFileSync(log, 'utf8')).not.toContain(':8081')
    })
  })

  it.each([
    ['fail-fast', (r: {code: string; seconds: number}) => expect(r.seconds).toBeLessThan(1)],
    ['fail-closed', (r: {code: string; seconds: number}) => expect(r.seconds).toBeGreaterThanOrEqual(1.9)],
    ['pass', (r: {code: string; seconds: number}) => expect(r.code).toBe('200')],
  ] as const)('proxy down, %s: does what it says', async (mode, check) => {
    await withSandbox('pd', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      expect((await skfp(interceptArgs(sb, host, ['--proxy-down', mode]))).exitCode).toBe(0)
      await startHttp(sb, remote)
      for (const url of [`http://${REMOTE4}:8080/`, `http://[${REMOTE6}]:8080/`]) {
        // curl's own clock: from its start to its error or answer
        const [code, seconds] = (await curl(sb, host, url, 2, '%{http_code} %{time_total}')).stdout.split(' ')
        check({code, seconds: Number(seconds)})
        if (mode !== 'pass') expect(code).toBe('000')
      }
      const st = await status(sb.name)
      expect(st.counters.tcNoListener).toBeGreaterThan(0)
      expect(st.intercept.proxy.listening).toEqual({v4: false, v6: false})
    })
  })

  it('with the fastpath on and a read/send relay: integrity holds, the app-proxy hop is redirected, and the upstream hop too when its server is local', async () => {
    await withSandbox('if', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      expect((await skfp(interceptArgs(sb, host).map((a) => (a === 'off' ? 'on' : a)))).exitCode).toBe(0)
      const relay = sb.start(host, [programPath('skfp-relay'), '--listen', `127.0.0.1:${PROXY_PORT}`, '--listen', `[::1]:${PROXY_PORT}`, '--mark', String(PROXY_MARK)])
      await new Promise<void>((resolve) => relay.stdout!.once('data', () => resolve()))
      // IPv4: the server is the world (outside the cgroup); IPv6: a local container (inside it)
      for (const [addr, seed, port, local] of [[REMOTE4, 'f4', 9011, false], [REMOTE6, 'f6', 9012, true]] as const) {
        const done = await remoteServer(sb, remote, addr, port, 64 * MiB, seed, [], local)
        const c = await transfer(sb, host, ['client', '--addr', addr, '--port', String(port), '--bytes', String(64 * MiB), '--seed', seed])
        expect((await done()).serverReceivedSha).toBe(expectedSha(`${seed}-up`, 64 * MiB))
        expect(c.clientReceivedSha).toBe(expectedSha(`${seed}-down`, 64 * MiB))
      }
      const st = await status(sb.name)
      expect(st.counters.connectionsPaired).toBe(3) // app-relay twice, relay-server once (IPv6)
      expect(st.counters.socketsAdded).toBe(6)
      expect(st.counters.bytesRedirected).toBeGreaterThan(0)
    })
  })

  it('down restores rules, routes, sysctls, qdiscs and filters; foreign ones are untouched by up and down', async () => {
    await withSandbox('ir', async (sb) => {
      const {host} = await proxyTopology(sb)
      const ns = (args: string[]) => runner.run({tool: args[0] as 'tc' | 'ip', args: args.slice(1), netns: host})
      await ns(['tc', 'qdisc', 'add', 'dev', 'up0', 'clsact'])
      // this kernel has only the bpf classifier: the foreign filter is a bpf one too
      await ns(['tc', 'filter', 'add', 'dev', 'up0', 'egress', 'prio', '100', 'bpf', 'direct-action', 'object-file', await foreignObject(), 'section', 'tc'])
      await ns(['ip', 'rule', 'add', 'fwmark', '0x77', 'lookup', '77', 'priority', '100'])
      const before = await hostSnapshot([host], sb.cgroup)
      expect((await skfp(interceptArgs(sb, host))).exitCode).toBe(0)
      const during = await runner.run({tool: 'tc', args: ['-j', 'filter', 'show', 'dev', 'up0', 'egress'], netns: host})
      expect(JSON.parse(during.stdout).filter((f: {pref: number; options?: unknown}) => f.options).map((f: {pref: number}) => f.pref)).toEqual([100, 1487])
      // a dry-run replace with other settings plans the whole swap: the instance's own rules are no collision
      const whileUp = await hostSnapshot([host], sb.cgroup)
      const dry = await skfp([...interceptArgs(sb, host, ['--proxy-down', 'pass']), '--replace', '--dry-run'])
      expect(dry.exitCode, dry.stderr).toBe(0)
      expect(dry.json.plan.map((s: {id: string}) => s.id)).toEqual(expect.arrayContaining(['lock', 'load', 'record']))
      await expectRestored(whileUp, [host], sb.cgroup)
      // a replace whose new settings collide (the foreign rule's mark) is refused before the running
      // instance goes down: it keeps running, untouched
      const colliding = await skfp([...interceptArgs(sb, host, ['--fwmark', '0x77']), '--replace'])
      expect(colliding.exitCode, colliding.stderr).toBe(4)
      expect(colliding.json.error.message).toMatch(/rule already uses fwmark 0x77/)
      await expectRestored(whileUp, [host], sb.cgroup)
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      await expectRestored(before, [host], sb.cgroup)
    })
  })
})
