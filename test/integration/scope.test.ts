// Interception's cgroup scope (--intercept-cgroup, --bypass-cgroup), proven with two processes in
// two cgroups side by side, TCP (curl) and UDP, through v2ray.
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {resolveTool} from '../../src/lib/exec.js'
import {waitForOutput} from '../../src/lib/iperf.js'
import {skfp, status, withSandbox} from './helpers.js'
import {interceptArgs, proxyTopology, REMOTE4, REMOTE6, startHttp, startV2ray} from './topology.js'

const UDP = join(PROJECT_ROOT, 'test', 'fixtures', 'udp.py')

describe('interception scope by cgroup', () => {
  it('--intercept-cgroup takes only its sockets, --bypass-cgroup never, the deepest listed cgroup decides', async () => {
    await withSandbox('sc', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      const a = sb.addCgroup('a')
      const b = sb.addCgroup('b')
      const {log} = await startV2ray(sb, host)
      // a's connections go to :8080 and :5300, b's to :8081 and :5301: the proxy's log says whose it saw
      await startHttp(sb, remote, 8080)
      await startHttp(sb, remote, 8081)
      for (const port of [5300, 5301])
        for (const addr of [REMOTE4, REMOTE6]) {
          const echo = sb.start(remote, [resolveTool('python3'), '-u', UDP, 'echo', '--addr', addr, '--port', String(port)], {outsideCgroup: true})
          await waitForOutput(echo, /listening/)
        }
      const traffic = async (cgroup: string, http: number, udp: number) => {
        for (const url of [`http://${REMOTE4}:${http}/`, `http://[${REMOTE6}]:${http}/`]) {
          const r = await sb.run(host, [resolveTool('curl'), '-s', '-o', '/dev/null', '-m', '5', '-w', '%{http_code}', url], {cgroup, allowFailure: true})
          expect(r.stdout, `${cgroup} ${url}`).toBe('200')
        }
        for (const addr of [REMOTE4, REMOTE6]) {
          const r = JSON.parse((await sb.run(host, [resolveTool('python3'), UDP, 'client', '--addr', addr, '--port', String(udp), '--count', '5'], {cgroup})).stdout)
          expect(r, `${cgroup} udp ${addr}`).toMatchObject({received: 5, error: null})
        }
      }
      const seen = () => {
        const text = readFileSync(log, 'utf8')
        return {a: /:8080 |:5300 /.test(text), b: /:8081 |:5301 /.test(text)}
      }

      const cases: [string[], {a: boolean; b: boolean}][] = [
        [['--intercept-cgroup', a], {a: true, b: false}],
        [['--bypass-cgroup', a], {a: false, b: true}],
        [['--intercept-cgroup', sb.cgroup, '--bypass-cgroup', b], {a: true, b: false}], // b: deeper than the sandbox's cgroup
      ]
      for (const [flags, expected] of cases) {
        const up = await skfp(interceptArgs(sb, host, [...flags, '--replace']))
        expect(up.exitCode, up.stderr).toBe(0)
        const before = (await status(sb.name)).counters
        await traffic(a, 8080, 5300)
        await traffic(b, 8081, 5301)
        expect(seen(), flags.join(' ')).toEqual(expected)
        const c = (await status(sb.name)).counters
        // one cgroup's 2 connections and 10 datagrams went to the proxy, the other's stayed out
        expect(c.tcAssignedListener - before.tcAssignedListener, flags.join(' ')).toBe(2)
        expect(c.udpRedirected - before.udpRedirected).toBe(10)
        expect(c.outOfScope - before.outOfScope).toBe(12)
        writeFileSync(log, '') // v2ray appends to the emptied file
      }
    })
  })
})
