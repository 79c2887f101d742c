// A real proxy chain: shadowsocks-libev's ss-redir (from `skfp template ss-redir`, TPROXY for TCP
// and UDP) on the host, relaying to an ss-server in the remote namespace, which reaches the
// destinations the host's clients asked for.
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {PROJECT_ROOT} from '../../src/lib/build.js'
import {resolveTool} from '../../src/lib/exec.js'
import {waitForOutput} from '../../src/lib/iperf.js'
import type {Sandbox} from '../../src/lib/sandbox.js'
import {skfp, status, withSandbox} from './helpers.js'
import {curl, interceptArgs, PROXY_MARK, PROXY_PORT, proxyTopology, REMOTE4, REMOTE6, startHttp, waitForListener} from './topology.js'

const UDP = join(PROJECT_ROOT, 'test', 'fixtures', 'udp.py')
const SERVER = '198.18.0.2' // the remote side's uplink address
const PASSWORD = 'skfp-test'

/** Output so far of a started child (stdout and stderr). */
function collect(child: ReturnType<Sandbox['start']>): () => string {
  let out = ''
  child.stdout?.on('data', (d) => (out += String(d)))
  child.stderr?.on('data', (d) => (out += String(d)))
  return () => out
}

describe('interception through ss-redir and ss-server', () => {
  it('TCP and UDP, IPv4 and IPv6, reach their destinations through the chain; the server logs each', async () => {
    await withSandbox('ss', async (sb) => {
      const {host, remote} = await proxyTopology(sb)
      const server = sb.start(remote, [resolveTool('ss-server'), '-s', SERVER, '-p', '8388', '-k', PASSWORD, '-m', 'chacha20-ietf-poly1305', '-u', '-v'], {outsideCgroup: true})
      const serverLog = collect(server)
      await waitForListener(sb, remote, 8388, 'udp')
      for (const addr of ['127.0.0.1', '::1']) {
        const t = await skfp(['template', 'ss-redir', '--json', '--proxy-port', String(PROXY_PORT), '--proxy-mark', String(PROXY_MARK), '--proxy-addr', addr, '--ss-server', `${SERVER}:8388`, '--ss-password', PASSWORD, '--bypass', `${SERVER}/32`])
        expect(t.exitCode, t.stderr).toBe(0)
        const file = sb.file(`ss-redir-${addr === '::1' ? 6 : 4}.json`)
        writeFileSync(file, t.json.config)
        sb.start(host, [resolveTool('ss-redir'), '-c', file, '-v'])
      }
      await waitForListener(sb, host, PROXY_PORT, 'udp', 2)
      await waitForListener(sb, host, PROXY_PORT, 'tcp', 2)
      const up = await skfp(interceptArgs(sb, host, ['--bypass', `${SERVER}/32`]))
      expect(up.exitCode, up.stderr).toBe(0)
      await startHttp(sb, remote)
      for (const url of [`http://${REMOTE4}:8080/`, `http://[${REMOTE6}]:8080/`]) expect((await curl(sb, host, url)).stdout, url).toBe('200')
      for (const addr of [REMOTE4, REMOTE6]) {
        const echo = sb.start(remote, [resolveTool('python3'), '-u', UDP, 'echo', '--addr', addr, '--port', '5300'], {outsideCgroup: true})
        await waitForOutput(echo, /listening/)
        const r = JSON.parse((await sb.run(host, [resolveTool('python3'), UDP, 'client', '--addr', addr, '--port', '5300', '--count', '200', '--window', '8'])).stdout)
        expect(r, addr).toMatchObject({received: 200, corrupt: 0, error: null})
      }
      // the server connected to each original destination
      const log = serverLog()
      for (const line of [`connect to ${REMOTE4}:8080`, `connect to [${REMOTE6}]:8080`, `${REMOTE4}:5300 <->`, `${REMOTE6}:5300 <->`]) expect(log, line).toContain(line)
      const c = (await status(sb.name)).counters
      expect(c.tcAssignedListener).toBe(2)
      expect(c.udpAssigned).toBe(400)
      expect(c.tcBypassed).toBeGreaterThan(0) // ss-redir's own connections to the server: --bypass
    })
  })
})
