// Transparent-proxy interception through a real proxy (Debian's v2ray), in network namespaces.
import {readFileSync} from 'node:fs'
import {describe, expect, it} from 'vitest'
import {programPath} from '../../src/lib/build.js'
import type {Sandbox} from '../../src/lib/sandbox.js'
import {expectedSha} from '../fixtures/transfer.mjs'
import {FIXTURE, foreignObject, runner, skfp, startCli, status, transfer, withSandbox} from './helpers.js'
import {expectRestored, hostSnapshot} from './snapshot.js'
import {addUplink, curl, enableForwarding, interceptArgs, PROXY_MARK, PROXY_PORT, proxyTopology, REMOTE4, REMOTE6, startHttp, startV2ray, tunnel, udpClient, udpEcho} from './topology.js'

const MiB = 1024 * 1024
const BIG = 256 * MiB

/** A transfer server in the remote netns: outside the cgroup (the world) unless inCgroup (a local container). */
async function remoteServer(sb: any, remote: string, addr: string, port: number, bytes: number, seed: string, extra: string[] = [], inCgroup = false) {
  const server = sb.start(remote, [process.execPath, FIXTURE, 'server', '--addr', addr, '--port', String(port), '--bytes', String(bytes), '--seed', seed, ...extra], {outsideCgroup: !inCgroup})
  await new Promise<void>((resolve) => server.stdout.once('data', () => resolve()))
  return async () => JSON.parse(String((await server).stdout).trim().split('\n').pop()!)
}

/** proxyTopology with a second way out to the same remote, up1 (made by addUp1, again after a
 * delete); defaultVia moves both families' default routes. */
async function twoUplinks(sb: Sandbox) {
  const {host, remote} = await proxyTopology(sb)
  return {
    host,
    remote,
    addUp1: () => addUplink(sb, host, remote, 'up1', ['198.18.0.5', 'fd00:19::1'], ['198.18.0.6', 'fd00:19::2']),
    defaultVia: async (gw4: string, gw6: string) => {
      await sb.cmd(host, ['route', 'replace', 'default', 'via', gw4])
      await sb.cmd(host, ['-6', 'route', 'replace', 'default', 'via', gw6])
    },
  }
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

  it('with no --uplink the uplinks follow the default routes: status warns when they leave by another interface, up moves the hooks there (routes moved, the uplink deleted, a tun device)', async () => {
    await withSandbox('iu', async (sb) => {
      const {host, remote, addUp1, defaultVia} = await twoUplinks(sb)
      await addUp1()
      const args = interceptArgs(sb, host)
      expect((await skfp(args)).json).toMatchObject({action: 'created'})
      const {log} = await startV2ray(sb, host)
      await startHttp(sb, remote)
      const urls = [`http://${REMOTE4}:8080/`, `http://[${REMOTE6}]:8080/`]
      // both families fetched; how many of those fetches the proxy saw
      const proxiedOf = async () => {
        for (const url of urls) expect((await curl(sb, host, url)).stdout, url).toBe('200')
        const lines = readFileSync(log, 'utf8').split('\n')
        return [`tcp:${REMOTE4}:8080`, `tcp:[${REMOTE6}]:8080`].map((dst) => lines.filter((l) => l.includes(dst)).length)
      }
      let st = await status(sb.name)
      expect(st.intercept).toMatchObject({uplinks: [{dev: 'up0', attached: true}], defaultRoutes: ['up0']})
      expect(st.warnings).toEqual([])
      expect(await proxiedOf()).toEqual([1, 1])

      // another network: the default routes leave by up1, whose traffic skfp does not see
      await defaultVia('198.18.0.6', 'fd00:19::2')
      st = await status(sb.name)
      expect(st).toMatchObject({state: 'up', intercept: {uplinks: [{dev: 'up0', attached: true}], defaultRoutes: ['up1']}})
      expect(st.warnings).toEqual([expect.stringMatching(/^the default route leaves by up1, which is not intercepted \(uplinks: up0\): run `skfp up` again with the same flags/)])
      expect(await proxiedOf(), 'direct, as the warning says').toEqual([1, 1])
      const moved = await skfp(args)
      expect(moved.json, moved.stderr).toMatchObject({action: 'replaced', routingMoved: {uplinks: {from: ['up0'], to: ['up1']}}})
      st = await status(sb.name)
      expect(st).toMatchObject({state: 'up', warnings: [], intercept: {uplinks: [{dev: 'up1', attached: true}], defaultRoutes: ['up1']}})
      expect(await proxiedOf()).toEqual([2, 2])
      expect((await skfp(args)).json.action).toBe('unchanged')

      // the uplink itself goes (a USB adapter unplugged): half up; up follows the routes back to up0
      await sb.cmd(host, ['link', 'del', 'up1'])
      await defaultVia('198.18.0.2', 'fd00:18::2')
      expect((await status(sb.name)).problems).toEqual(['the clsact qdisc of up1 is missing', 'tc filter on up1 egress is missing', 'tc filter on up1 ingress is missing'])
      const back = await skfp(args)
      expect(back.json, back.stderr).toMatchObject({action: 'replaced', routingMoved: {uplinks: {from: ['up1'], to: ['up0']}}})
      expect(await status(sb.name)).toMatchObject({state: 'up', problems: [], warnings: [], intercept: {uplinks: [{dev: 'up0', attached: true}]}})
      expect(await proxiedOf()).toEqual([3, 3])
      // a VPN takes the IPv4 default route (a tun device, no link-layer header): up moves onto both,
      // with the programs' L3 variant on tun0; IPv6 still leaves by up0, through the proxy
      await sb.cmd(host, ['tuntap', 'add', 'tun0', 'mode', 'tun'])
      await sb.cmd(host, ['link', 'set', 'tun0', 'up'])
      await sb.cmd(host, ['route', 'replace', 'default', 'dev', 'tun0'])
      const vpn = await skfp(args)
      expect(vpn.json, vpn.stderr).toMatchObject({action: 'replaced', routingMoved: {uplinks: {from: ['up0'], to: ['tun0', 'up0']}}})
      expect(await status(sb.name)).toMatchObject({
        state: 'up',
        warnings: [],
        intercept: {uplinks: [{dev: 'tun0', attached: true, l3: true}, {dev: 'up0', attached: true, l3: false}], defaultRoutes: ['tun0', 'up0']},
      })
      expect((await curl(sb, host, `http://[${REMOTE6}]:8080/`)).stdout).toBe('200')
      expect(readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(`tcp:[${REMOTE6}]:8080`))).toHaveLength(4)
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      expect((await status(sb.name)).state).toBe('down')
    })
  })

  it('up --follow moves the uplinks with the default routes and puts back the filters of an uplink created again, by itself; SIGTERM leaves the instance up; a down ends it', async () => {
    await withSandbox('if', async (sb) => {
      const {host, remote, addUp1, defaultVia} = await twoUplinks(sb)
      await addUp1()
      const args = interceptArgs(sb, host).filter((a) => a !== '--json')
      const refused = await skfp([...args, '--follow', '--json'])
      expect([refused.exitCode, refused.json?.error.message]).toEqual([2, '--follow does not go with --json'])
      const follower = startCli([...args, '--follow'], 170_000)
      await follower.waitFor(/following the links and routes of netns skfp-t/)
      // status names it; a second follower is refused
      expect((await status(sb.name)).followedBy).toBe(follower.child.pid)
      const second = await skfp([...args, '--follow'])
      expect([second.exitCode, second.stdout, second.stderr.trim()]).toEqual([4, '', `skfp: instance ${sb.name} is followed by another skfp (pid ${follower.child.pid}): one follower is enough: stop that one first (it leaves the instance up)`])
      const {log} = await startV2ray(sb, host)
      await startHttp(sb, remote)
      const proxied = () => readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(`tcp:${REMOTE4}:8080`)).length
      expect((await curl(sb, host, `http://${REMOTE4}:8080/`)).stdout).toBe('200')
      expect(proxied()).toBe(1)

      await defaultVia('198.18.0.6', 'fd00:19::2')
      await follower.waitFor(/uplinks up0 → up1 \(the default routes moved\)/)
      expect(await status(sb.name)).toMatchObject({state: 'up', warnings: [], intercept: {uplinks: [{dev: 'up1', attached: true}]}})
      expect((await curl(sb, host, `http://${REMOTE4}:8080/`)).stdout).toBe('200')
      expect(proxied()).toBe(2)

      // up1 deleted, then made again: no default route meanwhile (said once), its filters back after
      await sb.cmd(host, ['link', 'del', 'up1'])
      await follower.waitFor(/skfp: no default route in netns skfp-t/)
      await addUp1()
      await defaultVia('198.18.0.6', 'fd00:19::2')
      await follower.waitFor(/instance skfp-t\S+: 3 missing change\(s\) put back/)
      expect(follower.output().match(/no default route/g)).toHaveLength(1)
      expect(await status(sb.name)).toMatchObject({state: 'up', problems: [], intercept: {uplinks: [{dev: 'up1', attached: true}]}})
      expect((await curl(sb, host, `http://${REMOTE4}:8080/`)).stdout).toBe('200')
      expect(proxied()).toBe(3)

      // a VPN comes up as wg-quick sets it (its default route in its own table, a policy rule): the
      // follower takes its tun device as an uplink too, with the programs' L3 variant
      await sb.cmd(host, ['tuntap', 'add', 'tun0', 'mode', 'tun'])
      await sb.cmd(host, ['link', 'set', 'tun0', 'up'])
      await sb.cmd(host, ['route', 'add', 'default', 'dev', 'tun0', 'table', '51820'])
      await sb.cmd(host, ['rule', 'add', 'not', 'fwmark', '51820', 'table', '51820'])
      await follower.waitFor(/uplinks up1 → tun0, up1 \(the default routes moved\), VPN marks none → 0xca6c \(the policy rules changed\)/)
      expect((await status(sb.name)).intercept).toMatchObject({uplinks: [{dev: 'tun0', attached: true, l3: true}, {dev: 'up1', attached: true, l3: false}], vpnMarks: ['0xca6c']})
      // the VPN goes down (wg-quick down): its rule goes, and its mark with it
      await sb.cmd(host, ['rule', 'del', 'not', 'fwmark', '51820', 'table', '51820'])
      await follower.waitFor(/uplinks tun0, up1 → up1 \(the default routes moved\), VPN marks 0xca6c → none \(the policy rules changed\)/)
      expect((await status(sb.name)).intercept).toMatchObject({uplinks: [{dev: 'up1', attached: true, l3: false}], vpnMarks: []})

      // SIGTERM (a service stopped): it stops following, the instance stays up
      follower.child.kill('SIGTERM')
      const stopped = await follower.child
      expect([stopped.exitCode, stopped.stdout]).toEqual([0, expect.stringMatching(/stopped following: instance \S+ stays up/)])
      expect(await status(sb.name)).toMatchObject({state: 'up', followedBy: null})
      // a down from elsewhere ends a follower
      const again = startCli([...args, '--follow'], 170_000)
      await again.waitFor(/following the links/)
      expect(again.output()).toContain(`instance ${sb.name} is already up with these settings`)
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      const ended = await again.child
      expect([ended.exitCode, ended.stdout]).toEqual([0, expect.stringMatching(/instance \S+ was taken down: no longer following/)])
      expect((await status(sb.name)).state).toBe('down')
    })
  })

  it('up --follow ends (exit 3, in one line) when its netns is deleted, even when one by the same name comes at once; down then removes what is left', async () => {
    await withSandbox('ig', async (sb) => {
      const {host} = await proxyTopology(sb)
      const follower = startCli([...interceptArgs(sb, host).filter((a) => a !== '--json'), '--follow'], 60_000)
      await follower.waitFor(/following the links and routes of netns skfp-t/)
      // deleted and made again at once (a container restarted): another namespace by that name
      await runner.run({tool: 'ip', args: ['netns', 'del', host]})
      await runner.run({tool: 'ip', args: ['netns', 'add', host]})
      const ended = await follower.child
      expect([ended.exitCode, ended.stderr.trim().split('\n').pop()]).toEqual([3, `skfp: netns ${host} is gone: nothing is left to follow: \`skfp down --instance ${sb.name}\` removes what is left of the instance`])
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      expect((await status(sb.name)).state).toBe('down')
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

describe('interfaces without link-layer header: VPN tunnels (tun devices)', () => {
  it("the host's TCP and UDP leaving by a tun uplink (routed as wg-quick routes), and a VPN client's coming in on a tun --lan interface, go through the proxy intact, IPv4 and IPv6; with the proxy gone fail-fast answers both at once; down restores all", async () => {
    await withSandbox('i3', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      // the host's VPN, tun0, carried over up0 to the remote and routed as wg-quick routes: a default
      // route in its own table under a policy rule that the tunnel's own packets escape by their mark
      // (WireGuard's fwmark; here the SO_MARK of socat's socket), past the main table's (by up0)
      await tunnel(sb, {netns: host, addrs: ['198.18.2.1/30', 'fd00:1a::1/64'], under: '198.18.0.1', mark: 51820}, {netns: remote, addrs: ['198.18.2.2/30', 'fd00:1a::2/64'], under: '198.18.0.2'}, 'tun0', 5101)
      for (const family of ['-4', '-6']) {
        await sb.cmd(host, [family, 'route', 'add', 'default', 'dev', 'tun0', 'table', '51820'])
        await sb.cmd(host, [family, 'rule', 'add', 'not', 'fwmark', '51820', 'table', '51820'])
        await sb.cmd(host, [family, 'rule', 'add', 'table', 'main', 'suppress_prefixlength', '0'])
      }
      // a VPN client of the host (the host is its VPN server and routes for it): tun1
      const client = await sb.addNetns('v')
      await sb.link({netns: host, dev: 'vv0', addrs: ['198.18.3.1/30']}, {netns: client, dev: 'vv0', addrs: ['198.18.3.2/30']})
      await tunnel(sb, {netns: host, addrs: ['198.18.3.5/30', 'fd00:1b::1/64'], under: '198.18.3.1'}, {netns: client, addrs: ['198.18.3.6/30', 'fd00:1b::2/64'], under: '198.18.3.2'}, 'tun1', 5102)
      await sb.cmd(client, ['route', 'add', 'default', 'dev', 'tun1'])
      await sb.cmd(client, ['-6', 'route', 'add', 'default', 'dev', 'tun1'])
      await enableForwarding(sb, host)
      const before = await hostSnapshot([host], sb.cgroup)

      // no --uplink: the uplinks are up0 (the main table's default route) and tun0 (where the host's
      // traffic goes); the VPN's own packets to its server leave by up0 with the mark of its policy
      // rule: they go direct (through the proxy, or refused with it, the tunnel would break)
      const up = await skfp(interceptArgs(sb, host, ['--lan', 'tun1', '--proxy-down', 'fail-fast', '--bypass', '198.18.2.2/32']))
      expect(up.exitCode, up.stderr).toBe(0)
      const st = await status(sb.name)
      expect(st.intercept).toMatchObject({
        uplinks: [{dev: 'tun0', attached: true, l3: true}, {dev: 'up0', attached: true, l3: false}],
        lan: [{dev: 'tun1', attached: true}],
        defaultRoutes: ['tun0', 'up0'],
        vpnMarks: ['0xca6c'],
      })
      expect(st.warnings).toEqual([])
      const human = (await skfp(['status', '--instance', sb.name])).stdout
      expect(human).toMatch(/intercept {2}tun0 \(L3\) attached, up0 attached; lo attached/)
      expect(human).toMatch(/vpn {8}its own packets \(marked 0xca6c\) go direct/)
      // as the tc programs read it (BTF): the mark and its mask in the first slot
      const dumped = await runner.run({tool: 'bpftool', args: ['-j', 'map', 'dump', 'pinned', `/sys/fs/bpf/skfp/${sb.name}/maps/skfp_config`]})
      expect(JSON.parse(dumped.stdout)[0].formatted.value).toMatchObject({vpn_mark: [51820, 0, 0, 0], vpn_mask: [0xffffffff, 0, 0, 0]})
      // no proxy yet, and fail-fast: datagrams through the tunnel to its far end's own address
      // (--bypass: into tun0 untouched) come back, as the tunnel's own packets go direct by up0;
      // handed to the proxy they would be refused
      await udpEcho(sb, remote, '198.18.2.2', 5301)
      const inner = await udpClient(sb, host, '198.18.2.2', 5301, ['--count', '20', '--size', '1200', '--window', '4', '--timeout', '2'])
      expect([inner.error, inner.corrupt, inner.received > 15], JSON.stringify(inner)).toEqual([null, 0, true])
      const {child: v2ray, log} = await startV2ray(sb, host)
      await startHttp(sb, remote)
      for (const ns of [host, client]) for (const url of [`http://${REMOTE4}:8080/`, `http://[${REMOTE6}]:8080/`]) expect((await curl(sb, ns, url)).stdout, `${ns} ${url}`).toBe('200')
      // the host's bytes both ways, and datagrams, every one intact
      for (const [addr, seed, port] of [[REMOTE4, 'l4', 9021], [REMOTE6, 'l6', 9022]] as const) {
        for (const [up, down] of [[8 * MiB, 64], [64, 8 * MiB]]) {
          const sizes = ['--up', String(up), '--down', String(down), '--sequential']
          const done = await remoteServer(sb, remote, addr, port, 8 * MiB, seed, sizes)
          const c = await transfer(sb, host, ['client', '--addr', addr, '--port', String(port), '--seed', seed, ...sizes])
          const s = await done()
          expect([s.serverReceived, s.serverReceivedSha]).toEqual([up, expectedSha(`${seed}-up`, up)])
          expect([c.clientReceived, c.clientReceivedSha]).toEqual([down, expectedSha(`${seed}-down`, down)])
        }
        const echo = await udpEcho(sb, remote, addr, 5300)
        for (const ns of [host, client]) {
          const r = await udpClient(sb, ns, addr, 5300, ['--count', '200', '--size', '1200', '--window', '16'])
          expect([r.error, r.corrupt], `${ns} ${addr}`).toEqual([null, 0])
          expect(r.received, `${ns} ${addr}: loss ${r.lossPct}%`).toBeGreaterThan(180)
        }
        expect(echo.lines().every((l) => l.ok)).toBe(true)
      }
      const accessLog = readFileSync(log, 'utf8').split('\n')
      for (const [from, dest] of [
        ['198.18.2.1:', `tcp:${REMOTE4}:8080`],
        ['[fd00:1a::1]:', `tcp:[${REMOTE6}]:8080`],
        ['198.18.3.6:', `tcp:${REMOTE4}:8080`],
        ['[fd00:1b::2]:', `tcp:[${REMOTE6}]:8080`],
        ['198.18.2.1:', `udp:${REMOTE4}:5300`],
        ['198.18.3.6:', `udp:${REMOTE4}:5300`],
        ['[fd00:1a::1]:', `udp:[${REMOTE6}]:5300`],
        ['[fd00:1b::2]:', `udp:[${REMOTE6}]:5300`],
      ])
        expect(accessLog.filter((l) => l.includes(` ${from}`) && l.includes(`accepted ${dest}`)), `${from} ${dest}`).not.toHaveLength(0)
      // the tunnel's own datagrams never reached the proxy
      expect(accessLog.filter((l) => l.includes('198.18.0.2:5101'))).toEqual([])
      const c = (await status(sb.name)).counters
      expect(c.tcAssignedListener).toBeGreaterThanOrEqual(6)
      expect(c.udpRedirected).toBeGreaterThan(300)
      expect(c.lanAssigned).toBeGreaterThan(400)

      // the proxy goes away: the host and the VPN client are refused at once, TCP and UDP
      v2ray.kill('SIGTERM')
      await v2ray.catch(() => {})
      for (const ns of [host, client])
        for (const addr of [REMOTE4, REMOTE6]) {
          const url = addr === REMOTE4 ? `http://${addr}:8080/` : `http://[${addr}]:8080/`
          const [code, seconds] = (await curl(sb, ns, url, 2, '%{http_code} %{time_total}')).stdout.split(' ')
          expect([code, Number(seconds) < 1], `${ns} ${url}`).toEqual(['000', true])
          expect((await udpClient(sb, ns, addr, 5300, ['--count', '3', '--timeout', '1'])).error, `${ns} ${addr}`).toBe('ECONNREFUSED')
        }
      expect((await skfp(['down', '--instance', sb.name])).exitCode).toBe(0)
      await expectRestored(before, [host], sb.cgroup)
      expect((await curl(sb, host, `http://${REMOTE4}:8080/`)).stdout, 'direct again').toBe('200')
    })
  })
})
