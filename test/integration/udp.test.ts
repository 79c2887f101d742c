// UDP interception through a real proxy (Debian's v2ray, dokodemo-door tcp,udp with tproxy) and a
// real resolver (dnsmasq) and client (dig), in network namespaces.
import {readFileSync} from 'node:fs'
import {describe, expect, it} from 'vitest'
import {resolveTool} from '../../src/lib/exec.js'
import {waitForOutput} from '../../src/lib/iperf.js'
import type {Sandbox} from '../../src/lib/sandbox.js'
import {skfp, status, withSandbox} from './helpers.js'
import {interceptArgs, proxyTopology, REMOTE4, REMOTE6, startV2ray, udpClient, udpEcho} from './topology.js'

const HOST4 = '198.18.0.1'
const HOST6 = 'fd00:18::1'

/** dnsmasq answering skfp.test with the given addresses, on the given listen addresses. */
async function resolver(sb: Sandbox, ns: string, listen: string[], answer: {a: string; aaaa: string}, outsideCgroup = true): Promise<void> {
  const child = sb.start(
    ns,
    [
      resolveTool('dnsmasq'), '--keep-in-foreground', '--no-resolv', '--no-hosts', '--conf-file=/dev/null', '--pid-file=', '--user=root',
      '--bind-interfaces', ...listen.map((a) => `--listen-address=${a}`), `--address=/skfp.test/${answer.a}`, `--address=/skfp.test/${answer.aaaa}`, '--log-facility=-',
    ],
    {outsideCgroup},
  )
  await waitForOutput({stdout: child.stderr}, /started, version/)
}

async function dig(sb: Sandbox, ns: string, server: string, type: 'A' | 'AAAA'): Promise<string> {
  const r = await sb.run(ns, [resolveTool('dig'), `@${server}`, 'skfp.test', type, '+short', '+tries=1', '+time=3'], {allowFailure: true})
  return r.stdout.trim()
}

const REMOTE_ANSWER = {a: '198.19.9.9', aaaa: '2001:2::99'}

describe('UDP interception', () => {
  it('DNS and a bulk transfer over IPv4 and IPv6 go through the proxy to the destination the client asked, every datagram intact', async () => {
    await withSandbox('ud', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      const up = await skfp(interceptArgs(sb, host))
      expect(up.exitCode, up.stderr).toBe(0)
      const {log} = await startV2ray(sb, host)
      await resolver(sb, remote, [REMOTE4, REMOTE6], REMOTE_ANSWER)
      expect(await dig(sb, host, REMOTE4, 'A')).toBe(REMOTE_ANSWER.a)
      expect(await dig(sb, host, REMOTE6, 'AAAA')).toBe(REMOTE_ANSWER.aaaa)
      const accessLog = readFileSync(log, 'utf8')
      expect(accessLog).toContain(`accepted udp:${REMOTE4}:53`)
      expect(accessLog).toContain(`accepted udp:[${REMOTE6}]:53`)

      for (const addr of [REMOTE4, REMOTE6]) {
        const echo = await udpEcho(sb, remote, addr, 5300)
        const r = await udpClient(sb, host, addr, 5300, ['--count', '2000', '--size', '1200', '--window', '32'])
        console.log(`udp bulk through v2ray to ${addr}: ${r.received}/${r.sent} datagrams back, loss ${r.lossPct}%, rtt p50 ${r.rttMsP50} ms`)
        expect(r.error).toBeNull()
        expect(r.corrupt).toBe(0)
        expect(echo.lines().every((l) => l.ok)).toBe(true) // every datagram that arrived was whole
        expect(r.received).toBeGreaterThan(r.sent * 0.9) // the loss is reported above, not hidden
      }
      expect(readFileSync(log, 'utf8')).toContain(`accepted udp:[${REMOTE6}]:5300`)
      const st = await status(sb.name)
      expect(st.intercept.udp).toEqual({enabled: true, listening: {v4: true, v6: true}})
      expect(st.intercept.uplinks).toEqual([{dev: 'up0', attached: true, l3: false}])
      expect(st.counters.udpRedirected).toBeGreaterThan(4000)
      expect(st.counters.udpAssigned).toBe(st.counters.udpRedirected)
      expect(st.counters.udpNoProxy).toBe(0)
    })
  })

  it("stays out of the way of a resolver on the host itself and of the host's own UDP servers; bypass and --no-udp go direct", async () => {
    await withSandbox('ul', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      // --no-bypass-private: fd00:18::2, the remote side's address, is not bypassed either
      expect((await skfp(interceptArgs(sb, host, ['--no-bypass-private']))).exitCode).toBe(0)
      const {log} = await startV2ray(sb, host)
      // a resolver of the host on loopback and on its own uplink address
      await resolver(sb, host, ['127.0.0.1', HOST4, '::1', HOST6], {a: '198.19.7.7', aaaa: '2001:2::77'}, false)
      for (const server of ['127.0.0.1', HOST4]) expect(await dig(sb, host, server, 'A')).toBe('198.19.7.7')
      for (const server of ['::1', HOST6]) expect(await dig(sb, host, server, 'AAAA')).toBe('2001:2::77')
      // the host's UDP server, asked from the remote side: its answers go straight back
      for (const addr of [HOST4, HOST6]) {
        await udpEcho(sb, host, addr, 5400, false)
        const r = await udpClient(sb, remote, addr, 5400, ['--count', '50'])
        expect(r).toMatchObject({received: 50, corrupt: 0, error: null})
      }
      let c = (await status(sb.name)).counters
      expect(c.udpAnswers).toBe(100)
      expect(c.udpRedirected).toBe(0)
      expect(readFileSync(log, 'utf8')).toBe('')

      // a port bypass, then --no-udp: the remote echo server gets the datagrams straight from the client
      const echo4 = await udpEcho(sb, remote, REMOTE4, 5300)
      const echo6 = await udpEcho(sb, remote, REMOTE6, 5300)
      for (const extra of [['--no-bypass-private', '--bypass-port', '5300'], ['--no-bypass-private', '--no-udp']]) {
        const replaced = await skfp(interceptArgs(sb, host, [...extra, '--replace']))
        expect(replaced.exitCode, replaced.stderr).toBe(0)
        for (const addr of [REMOTE4, REMOTE6]) expect(await udpClient(sb, host, addr, 5300, ['--count', '20'])).toMatchObject({received: 20, error: null})
        c = (await status(sb.name)).counters
        expect(c.udpRedirected, extra.join(' ')).toBe(0)
      }
      expect(c.udpSeen).toBe(0) // --no-udp: not even looked at
      expect((await status(sb.name)).intercept.udp.enabled).toBe(false)
      expect(readFileSync(log, 'utf8')).not.toContain(':5300')
      const port = (l: {from: [string, number]}) => l.from[1]
      expect(echo4.lines().length).toBe(40)
      expect(echo6.lines().length).toBe(40)
      expect(new Set([...echo4.lines(), ...echo6.lines()].map((l) => l.from[0]))).toEqual(new Set([HOST4, HOST6]))
      expect(echo4.lines().every((l) => port(l) > 0)).toBe(true)
    })
  })

  it.each([
    ['fail-fast', 'ECONNREFUSED'],
    ['fail-closed', 'timeout'],
    ['pass', null],
  ] as const)('proxy down, %s: UDP does what it says, IPv4 and IPv6', async (mode, error) => {
    await withSandbox('un', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      expect((await skfp(interceptArgs(sb, host, ['--proxy-down', mode]))).exitCode).toBe(0)
      for (const addr of [REMOTE4, REMOTE6]) {
        const echo = await udpEcho(sb, remote, addr, 5300)
        const started = Date.now()
        const r = await udpClient(sb, host, addr, 5300, ['--count', '3', '--timeout', '1'])
        expect(r.error, addr).toBe(error)
        if (mode === 'fail-fast') expect(Date.now() - started).toBeLessThan(1000) // at once, not after the timeout
        expect(echo.lines().length, `${addr}: datagrams that left the host`).toBe(mode === 'pass' ? 3 : 0)
      }
      const c = (await status(sb.name)).counters
      if (mode === 'pass') {
        // the first datagram of each flow finds no proxy; once its answer came in, the flow is one
        // that went direct and stays direct (like a TCP connection opened while the proxy was down)
        expect([c.udpNoProxy, c.udpAnswers], JSON.stringify(c)).toEqual([2, 4])
      } else expect(c.udpNoProxy, JSON.stringify(c)).toBe(2) // the client gives up after the first
    })
  })

  it('fragments to intercepted destinations are dropped, never let out; IPv6 extension headers are walked', async () => {
    await withSandbox('uf', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      expect((await skfp(interceptArgs(sb, host, ['--proxy-down', 'pass']))).exitCode).toBe(0)
      const {log} = await startV2ray(sb, host)
      for (const addr of [REMOTE4, REMOTE6]) {
        const echo = await udpEcho(sb, remote, addr, 5300)
        // 4000 bytes over the uplink's 1500-byte MTU: the host sends fragments
        expect(await udpClient(sb, host, addr, 5300, ['--size', '4000', '--timeout', '1'])).toMatchObject({error: 'timeout'})
        expect(echo.lines(), `${addr}: a fragment left the host`).toEqual([])
      }
      const fc = (await status(sb.name)).counters
      // the first fragment of each datagram: dropping it ends the IP layer's sending of the rest
      expect(fc.udpFragmentsDropped, JSON.stringify(fc)).toBeGreaterThanOrEqual(2)
      // a destination options header before UDP: still intercepted, and answered
      expect(await udpClient(sb, host, REMOTE6, 5300, ['--dstopts', '--count', '5'])).toMatchObject({received: 5, error: null})
      expect(readFileSync(log, 'utf8')).toContain(`accepted udp:[${REMOTE6}]:5300`)
      // a bypassed destination gets its fragments
      expect((await skfp(interceptArgs(sb, host, ['--proxy-down', 'pass', '--bypass', `${REMOTE4}/32`, '--replace']))).exitCode).toBe(0)
      expect(await udpClient(sb, host, REMOTE4, 5300, ['--size', '4000'])).toMatchObject({received: 1, corrupt: 0, error: null})
    })
  })
})
